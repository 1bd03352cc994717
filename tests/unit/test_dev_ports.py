"""`s3compat dev` holds the gateway's port while its nodes bind port 0: a node handed that
port would answer the gateway's health check in HTTP/2 (seen as a start-up failure)."""

from __future__ import annotations

import socket

import pytest

from s3compat.devcluster.supervisor import _reserve_port


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_reserved_port_is_handed_to_no_other_socket_until_released() -> None:
    port = _free_port()
    reserved = _reserve_port("127.0.0.1", port)
    assert reserved is not None
    try:
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
    finally:
        reserved.close()
    with socket.socket() as gateway:  # what the gateway does next
        gateway.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        gateway.bind(("127.0.0.1", port))
        gateway.listen()


def test_a_port_already_listening_is_refused_up_front() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {port} on 127.0.0.1 is already in use"):
            _reserve_port("127.0.0.1", port)


def test_nothing_is_held_for_port_zero() -> None:
    assert _reserve_port("127.0.0.1", 0) is None
