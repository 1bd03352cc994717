"""Log lines carry the request id (text and JSON formats)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from s3compat.logs import REQUEST_ID, setup_logging


@pytest.fixture(autouse=True)
def _restore_root() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_lines_carry_the_request_id_of_their_task(capfd: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "json")
    log = logging.getLogger("s3compat.test")

    async def request(rid: str) -> None:
        REQUEST_ID.set(rid)
        await asyncio.sleep(0)  # interleave with the other request
        log.info("working on %s", rid)

    async def both() -> None:
        await asyncio.gather(request("AAAA"), request("BBBB"))

    asyncio.run(both())
    log.warning("outside any request")
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    by_message = {entry["message"]: entry for entry in lines}
    assert by_message["working on AAAA"]["request_id"] == "AAAA"
    assert by_message["working on BBBB"]["request_id"] == "BBBB"
    assert by_message["outside any request"]["request_id"] == "-"
    assert by_message["outside any request"]["level"] == "WARNING"


def test_text_lines_show_the_request_id(capfd: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "text")
    token = REQUEST_ID.set("ZZZZ")
    try:
        logging.getLogger("s3compat.test").info("hello")
    finally:
        REQUEST_ID.reset(token)
    assert "[ZZZZ] hello" in capfd.readouterr().err
