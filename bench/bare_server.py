"""The floor for the poll measures: a server that answers every GET 304 and does nothing else.

Run as its own process (``python -m bench.bare_server PORT``) exactly like the
depot, and polled by the same client, so the difference between the two is
what the depot does per request: signature and nonce checks, the database,
signing, logging.
"""

from __future__ import annotations

import sys
from typing import Final

from aiohttp import web

ETAG: Final = '"bench"'


async def not_modified(request: web.Request) -> web.StreamResponse:
    """304 with an ETag, whatever was asked."""
    return web.Response(status=304, headers={"ETag": ETAG, "Cache-Control": "no-cache"})


def app() -> web.Application:
    """The whole server."""
    application = web.Application()
    application.router.add_get("/{tail:.*}", not_modified)
    return application


def main(argv: list[str]) -> int:
    """Serve on 127.0.0.1:PORT until SIGINT/SIGTERM."""
    if len(argv) != 1 or not argv[0].isdigit():
        sys.stderr.write("usage: python -m bench.bare_server PORT\n")
        return 2
    web.run_app(app(), host="127.0.0.1", port=int(argv[0]), print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
