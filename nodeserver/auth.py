"""The cluster's shared token: every call to a node must carry it.

Gateways send it as metadata `authorization: Bearer <token>`; `x-s3compat-token: <token>`
is accepted too. A call without the right token ends with UNAUTHENTICATED before any
handler runs (so nothing is read, written or reported). The token itself is never logged.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc

log = logging.getLogger(__name__)

AUTHORIZATION = "authorization"
TOKEN_KEY = "x-s3compat-token"
_BEARER = "bearer "
TOKEN_ENV = "S3COMPAT_NODE_TOKEN"
CLUSTER_ID_ENV = "S3COMPAT_CLUSTER_ID"


class TokenError(Exception):
    """No usable token could be read."""


def read_token_file(path: Path) -> str:
    """The token in `path` (surrounding whitespace ignored); TokenError if there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read token file {path}: {exc}") from None
    token = text.strip()
    if not token:
        raise TokenError(f"token file {path} is empty")
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = 0
    if mode & 0o077:
        log.warning("token file %s is readable by other users (mode %o)", path, mode & 0o777)
    return token


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    """The metadata a client sends with every call (None: no token configured)."""
    if not token:
        return None
    return ((AUTHORIZATION, f"Bearer {token}"),)


def presented_token(metadata: Sequence[tuple[str, Any]] | None) -> bytes | None:
    """The token a call carries, from `authorization: Bearer …` or `x-s3compat-token`."""
    for key, value in metadata or ():
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        if key == AUTHORIZATION and text[: len(_BEARER)].lower() == _BEARER:
            return text[len(_BEARER) :].strip().encode()
        if key == TOKEN_KEY:
            return text.strip().encode()
    return None


def _denied_handler(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as `handler` that only refuses the call.

    It answers at once, without reading the request stream: the client of a streaming
    call then gets a clean status (see StorageService.store_chunk on grpc/grpc#36066).
    """

    async def refuse(context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong cluster token")

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await refuse(context)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await refuse(context)
        yield b""  # pragma: no cover - abort raised; makes this an async generator

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming)
    return grpc.unary_unary_rpc_method_handler(unary)


if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # not subscriptable at run time
    _Interceptor = grpc.aio.ServerInterceptor


class TokenInterceptor(_Interceptor):
    """Refuses, with UNAUTHENTICATED, every call that lacks the cluster's token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("empty token")
        self._token = token.encode()

    def accepts(self, metadata: Sequence[tuple[str, Any]] | None) -> bool:
        presented = presented_token(metadata)
        # compare_digest takes time independent of where the values differ.
        return presented is not None and hmac.compare_digest(presented, self._token)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        # None (despite the stubs) for a method no handler knows: gRPC answers UNIMPLEMENTED.
        handler = cast(
            "grpc.RpcMethodHandler[Any, Any] | None", await continuation(handler_call_details)
        )
        if handler is None or self.accepts(handler_call_details.invocation_metadata):
            return handler  # type: ignore[return-value]
        log.warning("refused %s: missing or wrong cluster token", handler_call_details.method)
        return _denied_handler(handler)
