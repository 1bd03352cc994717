"""The raw ceiling of bench_compare.py: a bare Starlette app that does no storage work.

PUT reads the request body and throws it away; GET streams zeros, as many bytes as the
key's first path segment says (`/<bucket>/<size>/<name>`); HEAD and everything else answer
200. Every answer carries a fixed ETag, so boto3's put_object and get_object accept it
(it checks no signature). It runs under uvicorn with the gateway's own options (see
`s3compat.cli._serve`): httptools, uvloop, no access log, the same worker count.

    python benchmarks/ceiling_app.py --port 9100 [--workers N]
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

BLOCK = bytes(1 << 20)
ETAG = '"00000000000000000000000000000000"'


def _size_of(key: str) -> int:
    head = key.split("/", 1)[0]
    return int(head) if head.isdigit() else 0


async def _zeros(size: int) -> AsyncIterator[bytes]:
    left = size
    while left > 0:
        n = min(left, len(BLOCK))
        yield BLOCK if n == len(BLOCK) else BLOCK[:n]
        left -= n


async def object_endpoint(request: Request) -> Response:
    key = request.path_params.get("key", "")
    if request.method == "PUT":
        async for _ in request.stream():
            pass
        return Response(status_code=200, headers={"ETag": ETAG})
    size = _size_of(key)
    headers = {
        "ETag": ETAG,
        "Content-Length": str(size),
        "Content-Type": "application/octet-stream",
    }
    if request.method == "GET":
        return StreamingResponse(_zeros(size), headers=headers)
    return Response(status_code=200, headers=headers)


async def bucket_endpoint(request: Request) -> Response:
    return Response(status_code=200)


METHODS = ["GET", "PUT", "HEAD", "POST", "DELETE"]

app = Starlette(
    routes=[
        Route("/{bucket}/{key:path}", object_endpoint, methods=METHODS),
        Route("/{bucket}", bucket_endpoint, methods=METHODS),
    ]
)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "ceiling_app:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
