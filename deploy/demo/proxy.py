"""A TCP proxy between one validator and the depot, to cut the link and bring it back.

While the link is up every connection is passed through byte for byte. A cut
drops every live connection and, like a bus in a tunnel, swallows new ones
without a word: the validator's requests time out rather than fail at once.
Restoring the link closes the swallowed connections (the validator sees them
end and tries again) and passes new ones through.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import structlog

log = structlog.get_logger("hesgate.demo.proxy")

_CHUNK: Final = 64 * 1024
_CLOSE_WAIT_S: Final = 5.0


class ProxyError(RuntimeError):
    """The proxy cannot start (or is used before it has)."""


@dataclass(slots=True, eq=False)
class _Link:
    """Both sides of one passed-through connection (hashed by identity)."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter

    def drop(self) -> None:
        self.client.transport.abort()
        self.upstream.transport.abort()


@dataclass(slots=True)
class ProxyStats:
    """What went through: connections passed, connections swallowed, bytes each way."""

    passed: int = 0
    swallowed: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    cuts: int = 0


class CuttableProxy:
    """Listens on ``127.0.0.1`` (a free port) and forwards to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, *, name: str = "proxy") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.name = name
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._cut = False
        self._links: set[_Link] = set()
        self._held: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Start listening; returns the port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.port

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._server is None:
            raise ProxyError(f"{self.name} is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, for a client that should go through it."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        """Whether the link is cut now."""
        return self._cut

    def cut(self) -> None:
        """Drop every live connection; swallow new ones until :meth:`restore`."""
        if self._cut:
            return
        self._cut = True
        self.stats.cuts += 1
        for link in list(self._links):
            link.drop()
        log.info("link cut", proxy=self.name, dropped=len(self._links))

    def restore(self) -> None:
        """Pass connections through again; end the swallowed ones."""
        if not self._cut:
            return
        self._cut = False
        for writer in list(self._held):
            writer.transport.abort()
        log.info("link restored", proxy=self.name, ended=len(self._held))

    async def close(self) -> None:
        """Stop listening and end every connection."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.drop()
        for writer in list(self._held):
            writer.transport.abort()
        if self._tasks:
            # Every connection is aborted, so each handler ends by itself; cancelling them
            # instead would make asyncio's stream callback report the cancellation as an error.
            _, stuck = await asyncio.wait(list(self._tasks), timeout=_CLOSE_WAIT_S)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if self._cut:
                await self._swallow(reader, writer)
            else:
                await self._pass(reader, writer)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.swallowed += 1
        self._held.add(writer)
        try:
            # Read and drop whatever comes, until the client gives up or the link returns.
            while await reader.read(_CHUNK):
                pass
        except ConnectionError:
            log.debug("swallowed connection ended", proxy=self.name)
        finally:
            self._held.discard(writer)
            writer.transport.abort()

    async def _pass(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError as err:
            log.warning("upstream refused", proxy=self.name, error=str(err))
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        self.stats.passed += 1
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, up=True), self._pipe(up_reader, writer, up=False)
            )
        finally:
            self._links.discard(link)
            link.drop()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, up: bool
    ) -> None:
        try:
            while data := await source.read(_CHUNK):
                sink.write(data)
                await sink.drain()
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
        except ConnectionError:
            log.debug("proxied connection dropped", proxy=self.name, up=up)
        finally:
            # One side ended: end the other, so neither end waits for nothing.
            sink.transport.abort()
