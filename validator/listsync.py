"""Keeping the local risk list current: a snapshot to start, then deltas.

* Bootstrap: ``GET /v1/risklist/snapshot`` into ``risklist.snapshot.part``. An
  interrupted download resumes with ``Range`` (and ``If-Range`` with the ETag,
  so a snapshot replaced in between starts over). The finished file is
  verified (signature, body hash) before it atomically replaces the list in
  use; a file that fails is deleted and the old list keeps serving.
* Then ``GET /v1/risklist/delta?since=V`` pages, each a signed envelope,
  until ``more`` is false; on an interval, at once when the depot is
  reachable again, and when a heartbeat says the depot has newer changes.
  Each poll carries ``If-None-Match: "vV"``: 304 means the list is current.
  410 (too old for deltas) goes back to a snapshot.

Lookups never wait on any of this (see :mod:`validator.risklist`).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import BinaryIO, Final

import aiohttp
import structlog

from validator.config import SyncSection
from validator.depot_client import (
    MSGPACK,
    BadAnswer,
    DepotClient,
    DepotError,
    DepotRefused,
    DepotUnavailable,
)
from validator.periodic import Backoff, sleep_or_wake
from validator.risklist import SNAPSHOT_NAME, ListUpdateError, RiskList

log = structlog.get_logger(__name__)

PART_SUFFIX: Final = ".part"
ETAG_SUFFIX: Final = ".etag"
CHUNK: Final = 256 * 1024
#: Pages fetched in one go before the loop lets the others run; more follow at once.
MAX_PAGES_PER_SYNC: Final = 10_000


class SnapshotGone(ListUpdateError):
    """The depot keeps no deltas that far back, even right after a new snapshot."""


class ListSync:
    """Brings the risk list up to the depot's version; never stops trying."""

    def __init__(
        self,
        *,
        client: DepotClient,
        risk_list: RiskList,
        data_dir: Path,
        config: SyncSection,
        read_timeout_s: float = 30.0,
    ) -> None:
        self._client = client
        self._list = risk_list
        self._snapshot = data_dir / SNAPSHOT_NAME
        self._part = data_dir / (SNAPSHOT_NAME + PART_SUFFIX)
        self._config = config
        self._read_timeout_s = read_timeout_s
        self.wake = asyncio.Event()
        self.problem: str | None = None

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Sync now, then on every interval or wake-up; back off on failure; forever."""
        backoff = Backoff(self._config.backoff_initial_s, self._config.backoff_max_s)
        while True:
            try:
                await self.sync_once()
            except DepotError as err:
                self.problem = str(err)
                await sleep_or_wake(self.wake, backoff.next_delay(err.retry_after))
                continue
            except ListUpdateError as err:
                self._refused(err)
                await sleep_or_wake(self.wake, backoff.next_delay())
                continue
            self.problem = None
            backoff.reset()
            await sleep_or_wake(self.wake, self._config.delta_interval_s)

    def _refused(self, err: ListUpdateError) -> None:
        self.problem = str(err)
        log.error("risk_list_update_refused", error=str(err))

    async def sync_once(self) -> None:
        """Take a snapshot if there is no list, then every delta page there is."""
        if not self._list.has_list:
            await self.fetch_snapshot()
        await self.fetch_deltas()

    # -- deltas --------------------------------------------------------------------------

    async def fetch_deltas(self) -> None:
        """Apply delta pages until the depot has no more; a 410 takes a snapshot first.

        Each poll names the list's version as ``If-None-Match: "v<version>"``:
        a depot at that very version answers 304 with no page to build, sign
        or check, and the list is marked current as an empty last page would.
        """
        took_snapshot = False
        for _ in range(MAX_PAGES_PER_SYNC):
            since = self._list.version
            path = f"/v1/risklist/delta?since={since}"
            etag = delta_etag(since)
            try:
                reply = await self._client.request(
                    "GET", path, headers={"Accept": MSGPACK, "If-None-Match": etag}
                )
            except DepotRefused as err:
                if err.status != 410:
                    raise
                if took_snapshot:
                    raise SnapshotGone(
                        f"deltas since {since} are gone even after a new snapshot"
                    ) from err
                head = err.details.get("head")
                # A head below this list: the depot's list was rebuilt from scratch,
                # and its snapshot replaces this list even though its version is lower.
                reset = isinstance(head, int) and head < since
                log.info("risk_list_delta_gone_taking_snapshot", since=since, depot_reset=reset)
                await self.fetch_snapshot(replace=reset)
                took_snapshot = True
                continue
            if reply.status == 304:
                if not _same_etag(reply.headers.get("ETag"), etag):
                    raise BadAnswer(
                        f"{path}: 304 with ETag {reply.headers.get('ETag')!r}, asked for {etag}"
                    )
                log.debug("risk_list_up_to_date", list_version=since)
                await self._list.mark_fresh()
                return
            if reply.status != 200:
                raise BadAnswer(f"{path}: HTTP {reply.status}, expected a page or 304")
            # Decoded, checked and applied in the list's worker thread, off the event loop.
            page = await self._list.apply_signed_delta(reply.body)
            if not page.more:
                await self._list.mark_fresh()
                return
            if page.until == since:
                raise ListUpdateError(f"delta page since {since} says 'more' but moves nothing")
        self.wake.set()  # a huge backlog of pages: carry on in the next round at once

    # -- snapshot ------------------------------------------------------------------------

    async def fetch_snapshot(self, *, replace: bool = False) -> bool:
        """Download (resuming when possible), verify and install the depot's snapshot.

        Returns whether the list changed (``False`` when the depot's is the one in
        use). ``replace`` takes it even when it is older than the list in use.
        """
        part, part_etag = self._part, _etag_path(self._part)
        have = part.stat().st_size if part.exists() else 0
        resume_etag = _read(part_etag) if have else None
        headers: dict[str, str] = {}
        if have and resume_etag:
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = resume_etag
        else:
            have = 0
            current = self._list.has_list and not replace
            current_etag = _read(_etag_path(self._snapshot)) if current else None
            if current_etag:
                headers["If-None-Match"] = current_etag
        async with self._client.stream(
            "/v1/risklist/snapshot", headers=headers, read_timeout_s=self._read_timeout_s
        ) as response:
            if response.status == 304:
                log.debug("risk_list_snapshot_unchanged")
                return False
            if response.status == 416:
                # The partial file does not fit the depot's: start over next time.
                part.unlink(missing_ok=True)
                part_etag.unlink(missing_ok=True)
                raise DepotUnavailable("snapshot range not satisfiable; restarting download")
            if response.status not in (200, 206):
                raise DepotUnavailable(f"snapshot download answered HTTP {response.status}")
            etag = response.headers.get("ETag")
            resumed = response.status == 206
            if resumed and not _range_starts_at(response.headers.get("Content-Range"), have):
                part.unlink(missing_ok=True)
                raise DepotUnavailable("snapshot resumed at the wrong offset; restarting")
            if not resumed:
                have = 0
                if etag:
                    _write(part_etag, etag)
                else:
                    part_etag.unlink(missing_ok=True)
            log.info("risk_list_snapshot_downloading", resume_from=have, etag=etag)
            await self._receive(response.content, part, append=resumed)
        try:
            changed = await self._list.install_snapshot(part, replace=replace)
        finally:
            part.unlink(missing_ok=True)
            part_etag.unlink(missing_ok=True)
        if etag:
            _write(_etag_path(self._snapshot), etag)
        return changed

    async def _receive(self, content: aiohttp.StreamReader, part: Path, *, append: bool) -> None:
        loop = asyncio.get_running_loop()
        out = part.open("ab" if append else "wb")
        try:
            async for chunk in content.iter_chunked(CHUNK):
                await loop.run_in_executor(None, out.write, chunk)
            await loop.run_in_executor(None, _flush, out)
        finally:
            out.close()


def delta_etag(version: int) -> str:
    """The entity tag of the delta page that ends at ``version``: ``"v<version>"``."""
    return f'"v{version}"'


def _same_etag(header: str | None, etag: str) -> bool:
    """Whether an ``ETag`` header names ``etag`` (a weak form, as a proxy may give it, too)."""
    if header is None:
        return False
    tag = header.strip()
    return tag.removeprefix("W/") == etag


def _flush(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


def _etag_path(path: Path) -> Path:
    return path.with_name(path.name + ETAG_SUFFIX)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="ascii", errors="replace")
    os.replace(tmp, path)


def _range_starts_at(content_range: str | None, offset: int) -> bool:
    """Whether ``Content-Range: bytes START-END/SIZE`` starts at ``offset``."""
    if not content_range or not content_range.startswith("bytes "):
        return False
    start, _, _ = content_range[len("bytes ") :].partition("-")
    return start.strip().isdigit() and int(start) == offset
