"""CompleteMultipartUpload's keepalive: quick work answers normally; slow work gets a 200
at once, whitespace while it runs, then the result, or an Error document in the body."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lxml import etree
from starlette.responses import Response, StreamingResponse

from s3compat.api.handlers.multipart import keepalive_response
from s3compat.core import errors

RESULT = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n"
    b'<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<ETag>&quot;abc-2&quot;</ETag></CompleteMultipartUploadResult>"
)
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


async def _work(delay: float, result: bytes = RESULT, fail: BaseException | None = None) -> bytes:
    await asyncio.sleep(delay)
    if fail is not None:
        raise fail
    return result


async def _answer(delay: float, **kw: Any) -> tuple[Response, list[bytes], list[float]]:
    """Run keepalive_response over `_work(delay)`; return the response, its body pieces and
    when (seconds after the call) each piece came."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    resp = await keepalive_response(
        _work(delay, **kw), resource="/b/k", request_id="REQ123", after=0.05, every=0.05
    )
    pieces: list[bytes] = []
    times: list[float] = []
    if isinstance(resp, StreamingResponse):
        async for piece in resp.body_iterator:
            pieces.append(piece if isinstance(piece, bytes) else piece.encode())
            times.append(loop.time() - start)
    return resp, pieces, times


def test_quick_work_is_a_plain_response() -> None:
    resp, _, _ = asyncio.run(_answer(0.0))
    assert not isinstance(resp, StreamingResponse)
    assert resp.status_code == 200
    assert resp.body == RESULT
    assert resp.media_type == "application/xml"


def test_quick_failure_raises_for_the_normal_error_path() -> None:
    # Before the deadline nothing has been sent, so the error keeps its own status: the
    # exception reaches the gateway's error handling unchanged.
    with pytest.raises(errors.InvalidPart):
        asyncio.run(_answer(0.0, fail=errors.InvalidPart()))


def test_slow_work_streams_declaration_spaces_then_the_result() -> None:
    resp, pieces, times = asyncio.run(_answer(0.4))
    assert isinstance(resp, StreamingResponse)
    assert resp.status_code == 200
    assert resp.media_type == "application/xml"
    body = b"".join(pieces)
    assert pieces[0] == DECLARATION
    assert times[0] < 0.3  # the declaration goes out before the work is done
    spaces = pieces[1:-1]
    assert spaces and all(p.strip() == b"" for p in spaces)
    assert b" " in body
    # The result follows, without a second XML declaration.
    assert body.count(b"<?xml") == 1
    assert body.endswith(RESULT.split(b"?>", 1)[1])
    root = etree.fromstring(body)  # the whole body is one well-formed document
    assert root.tag == S3_NS + "CompleteMultipartUploadResult"
    assert root.findtext(S3_NS + "ETag") == '"abc-2"'


def test_slow_work_without_a_declaration_of_its_own() -> None:
    doc = b"<CompleteMultipartUploadResult><ETag>x</ETag></CompleteMultipartUploadResult>"
    _, pieces, _ = asyncio.run(_answer(0.2, result=doc))
    body = b"".join(pieces)
    assert body.startswith(DECLARATION)
    assert body.endswith(doc)
    assert etree.fromstring(body).findtext("ETag") == "x"


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (errors.NoSuchUpload(UploadId="u-1"), "NoSuchUpload"),
        (errors.InvalidPart(PartNumber="2", ETag='"x"'), "InvalidPart"),
        (errors.EntityTooSmall(), "EntityTooSmall"),
        (RuntimeError("boom"), "InternalError"),
    ],
)
def test_slow_failure_ends_with_an_error_document(failure: BaseException, code: str) -> None:
    resp, pieces, _ = asyncio.run(_answer(0.3, fail=failure))
    assert isinstance(resp, StreamingResponse)
    assert resp.status_code == 200  # already sent: the error can only be in the body
    body = b"".join(pieces)
    assert body.startswith(DECLARATION)
    assert b" " in body
    assert body.count(b"<?xml") == 1
    root = etree.fromstring(body)
    assert root.tag == "Error"
    assert root.findtext("Code") == code
    assert root.findtext("Message")
    assert root.findtext("Resource") == "/b/k"
    assert root.findtext("RequestId") == "REQ123"
    assert b"boom" not in body  # internal details are not leaked
    if code == "NoSuchUpload":
        assert root.findtext("UploadId") == "u-1"


def test_spaces_keep_coming_while_the_work_runs() -> None:
    _, pieces, times = asyncio.run(_answer(0.5))
    spaces = len(pieces) - 2
    # Every 0.05 s after the first 0.05 s: about nine; allow for a slow machine.
    assert 3 <= spaces <= 12, (spaces, times)
    assert times == sorted(times)
