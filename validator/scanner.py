"""The serial QR scanner or card reader: frames in, whatever the device does.

Bytes are split on the configured terminator. A frame longer than the limit
is dropped up to the next terminator (resynchronising there) and reported as
unreadable, as are bytes left without a terminator for ``frame_timeout_s``
(a partial frame). When the device vanishes (USB unplugged) or cannot be
opened, the scanner says so and tries again every ``reopen_interval_s`` until
it is back; it never gives up and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import serial
import serial_asyncio_fast
import structlog

from protocol.frames import frame_shape
from validator.config import ScannerSection

log = structlog.get_logger(__name__)

#: Frames waiting for the gate; a scanner cannot honestly produce more than this.
QUEUE_SIZE: Final = 64


@dataclass(frozen=True, slots=True)
class ScannedFrame:
    """One complete frame, terminator removed, and when its last byte arrived."""

    data: bytes
    received_ns: int


@dataclass(frozen=True, slots=True)
class GarbledFrame:
    """Bytes that never made a frame: ``problem`` is ``too_long`` or ``partial``."""

    problem: str
    shape: str
    size: int
    received_ns: int


ScanEvent = ScannedFrame | GarbledFrame


class FrameSplitter:
    """Splits a byte stream into frames on a terminator, dropping over-long ones."""

    def __init__(self, terminator: bytes, max_frame_bytes: int) -> None:
        if not terminator:
            raise ValueError("the terminator must not be empty")
        self._term = terminator
        self._max = max_frame_bytes
        self._buf = bytearray()
        self._dropped = 0  # bytes thrown away from the current over-long frame
        self._dropped_head = b""

    @property
    def partial(self) -> bool:
        """Whether bytes of an unfinished frame are waiting."""
        return bool(self._buf) or self._dropped > 0

    def feed(self, data: bytes, now_ns: int) -> list[ScanEvent]:
        """Take bytes as they came; return the frames (and garbled ones) they completed."""
        self._buf += data
        events: list[ScanEvent] = []
        term = self._term
        while True:
            end = self._buf.find(term)
            if end < 0:
                break
            frame = bytes(self._buf[:end])
            del self._buf[: end + len(term)]
            if self._dropped:
                events.append(self._too_long(len(frame), now_ns))
            elif len(frame) > self._max:
                self._dropped_head = frame[:32]
                events.append(self._too_long(len(frame), now_ns))
            else:
                events.append(ScannedFrame(frame, now_ns))
        # No terminator in sight and already too long: keep only what could
        # start a terminator split across reads, so memory stays bounded.
        keep = len(term) - 1
        if len(self._buf) > self._max + keep:
            if not self._dropped:
                self._dropped_head = bytes(self._buf[:32])
            cut = len(self._buf) - keep
            self._dropped += cut
            del self._buf[:cut]
        return events

    def _too_long(self, tail: int, now_ns: int) -> GarbledFrame:
        size = self._dropped + tail
        event = GarbledFrame("too_long", frame_shape(self._dropped_head), size, now_ns)
        self._dropped = 0
        self._dropped_head = b""
        return event

    def flush(self, now_ns: int) -> GarbledFrame | None:
        """Give up on an unfinished frame (it timed out): report it as partial."""
        if not self.partial:
            return None
        if self._dropped:
            event = self._too_long(len(self._buf), now_ns)
        else:
            event = GarbledFrame("partial", frame_shape(bytes(self._buf)), len(self._buf), now_ns)
        self._buf.clear()
        return event


class _SerialProtocol(asyncio.Protocol):
    """Feeds a splitter from a serial transport; reports loss of the device."""

    def __init__(
        self,
        splitter: FrameSplitter,
        deliver: Callable[[ScanEvent], None],
        frame_timeout_s: float,
    ) -> None:
        self._splitter = splitter
        self._deliver = deliver
        self._timeout = frame_timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        for event in self._splitter.feed(data, now):
            self._deliver(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._splitter.partial:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)

    def _expire(self) -> None:
        self._timer = None
        event = self._splitter.flush(time.perf_counter_ns())
        if event is not None:
            self._deliver(event)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.lost.done():
            self.lost.set_result(exc)


@dataclass(frozen=True, slots=True)
class ScannerState:
    """Whether the scanner is there, for the screen and the status page."""

    connected: bool
    error: str | None


class Scanner:
    """Reads frames from the configured serial port into :attr:`events`, forever."""

    def __init__(
        self,
        config: ScannerSection,
        on_state: Callable[[ScannerState], None] | None = None,
    ) -> None:
        self._config = config
        self._on_state = on_state
        self.events: asyncio.Queue[ScanEvent] = asyncio.Queue(QUEUE_SIZE)
        self.state = ScannerState(connected=False, error="not opened yet")
        self._log = log.bind(port=config.port)

    def _set_state(self, state: ScannerState) -> None:
        self.state = state
        if self._on_state is not None:
            self._on_state(state)

    def _deliver(self, event: ScanEvent) -> None:
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            self._log.error("scanner_frame_dropped_queue_full", size=QUEUE_SIZE)

    async def run(self) -> None:
        """Open, read until the device goes, report, wait, open again; until cancelled."""
        loop = asyncio.get_running_loop()
        cfg = self._config
        reported: str | None = None
        while True:
            splitter = FrameSplitter(cfg.terminator_bytes, cfg.max_frame_bytes)
            factory = functools.partial(
                _SerialProtocol, splitter, self._deliver, cfg.frame_timeout_s
            )
            try:
                transport, protocol = await serial_asyncio_fast.create_serial_connection(
                    loop, factory, cfg.port, baudrate=cfg.baudrate
                )
            except (serial.SerialException, OSError, ValueError) as err:
                problem = f"cannot open {cfg.port}: {err}"
                if problem != reported:
                    # Once per kind of failure: a box without its scanner retries for hours.
                    self._log.error("scanner_unavailable", error=str(err))
                    reported = problem
                self._set_state(ScannerState(False, problem))
                await asyncio.sleep(cfg.reopen_interval_s)
                continue
            reported = None
            self._log.info("scanner_connected", baudrate=cfg.baudrate)
            self._set_state(ScannerState(True, None))
            try:
                assert isinstance(protocol, _SerialProtocol)
                exc = await protocol.lost
            finally:
                transport.close()
            problem = f"{cfg.port} went away: {exc}" if exc else f"{cfg.port} closed"
            self._log.error("scanner_lost", error=str(exc) if exc else None)
            self._set_state(ScannerState(False, problem))
            with contextlib.suppress(asyncio.QueueFull):
                # The partial frame the device left behind is unreadable, not lost in silence.
                event = splitter.flush(time.perf_counter_ns())
                if event is not None:
                    self.events.put_nowait(event)
            await asyncio.sleep(cfg.reopen_interval_s)
