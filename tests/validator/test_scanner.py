from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.validator.ptys import FakeCable, eventually
from validator.config import ScannerSection
from validator.scanner import FrameSplitter, GarbledFrame, ScanEvent, ScannedFrame, Scanner


@contextlib.asynccontextmanager
async def running(config: ScannerSection) -> AsyncIterator[Scanner]:
    scanner = Scanner(config)
    task = asyncio.create_task(scanner.run())
    try:
        yield scanner
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def config(cable: FakeCable, **kw: object) -> ScannerSection:
    fields: dict[str, object] = {
        "port": str(cable.path),
        "reopen_interval_s": 0.05,
        "frame_timeout_s": 0.3,
    }
    fields.update(kw)
    return ScannerSection(**fields)  # type: ignore[arg-type]


async def next_event(scanner: Scanner) -> ScanEvent:
    return await asyncio.wait_for(scanner.events.get(), 5)


async def test_frames_arrive_in_order(cable: FakeCable) -> None:
    async with running(config(cable)) as scanner:
        await eventually(lambda: scanner.state.connected)
        cable.send(b"R7G6915415\r12345678901|R7G6915415\rCARD:0A0B0C0D\r")
        frames = [await next_event(scanner) for _ in range(3)]
        assert [f.data for f in frames if isinstance(f, ScannedFrame)] == [
            b"R7G6915415",
            b"12345678901|R7G6915415",
            b"CARD:0A0B0C0D",
        ]


async def test_crlf_terminator_split_across_writes(cable: FakeCable) -> None:
    async with running(config(cable, terminator="CRLF")) as scanner:
        await eventually(lambda: scanner.state.connected)
        cable.send(b"R7G6915415\r")
        await asyncio.sleep(0.05)
        cable.send(b"\nABCD123456\r\n")
        first, second = await next_event(scanner), await next_event(scanner)
        assert first == ScannedFrame(b"R7G6915415", first.received_ns)
        assert isinstance(second, ScannedFrame)
        assert second.data == b"ABCD123456"


async def test_over_long_frame_resynchronises_on_next_terminator(cable: FakeCable) -> None:
    async with running(config(cable, max_frame_bytes=64)) as scanner:
        await eventually(lambda: scanner.state.connected)
        for _ in range(20):  # 2000 bytes of noise in pieces, no terminator
            cable.send(b"\x00\xff" * 50)
        cable.send(b"tail\rR7G6915415\r")
        garbled = await next_event(scanner)
        assert isinstance(garbled, GarbledFrame)
        assert garbled.problem == "too_long"
        assert garbled.size == 2004
        good = await next_event(scanner)
        assert isinstance(good, ScannedFrame)
        assert good.data == b"R7G6915415"


async def test_partial_frame_times_out_as_unreadable(cable: FakeCable) -> None:
    async with running(config(cable)) as scanner:
        await eventually(lambda: scanner.state.connected)
        cable.send(b"R7G69")
        garbled = await next_event(scanner)
        assert isinstance(garbled, GarbledFrame)
        assert garbled.problem == "partial"
        assert garbled.shape == "'A9A99'"  # the shape, never the letters and digits
        cable.send(b"R7G6915415\r")
        good = await next_event(scanner)
        assert isinstance(good, ScannedFrame)
        assert good.data == b"R7G6915415"


async def test_unplugged_scanner_is_retried_until_it_returns(cable: FakeCable) -> None:
    states: list[bool] = []
    scanner = Scanner(config(cable), on_state=lambda s: states.append(s.connected))
    task = asyncio.create_task(scanner.run())
    try:
        await eventually(lambda: scanner.state.connected)
        cable.send(b"R7G6")  # half a frame when the plug is pulled
        await asyncio.sleep(0.05)
        cable.unplug()
        await eventually(lambda: not scanner.state.connected)
        assert scanner.state.error is not None
        lost = await next_event(scanner)
        assert isinstance(lost, GarbledFrame)
        await asyncio.sleep(0.3)  # several failed reopen attempts
        assert not task.done()
        cable.plug()
        await eventually(lambda: scanner.state.connected)
        cable.send(b"CARD:01020304\r")
        frame = await next_event(scanner)
        assert isinstance(frame, ScannedFrame)
        assert frame.data == b"CARD:01020304"
        assert states[0] is True
        assert False in states
        assert states[-1] is True
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_scanner_absent_at_start_is_waited_for(tmp_path: Path) -> None:
    cable = FakeCable(tmp_path / "ttyLater")
    async with running(config(cable)) as scanner:
        await asyncio.sleep(0.2)
        assert not scanner.state.connected
        assert "ttyLater" in (scanner.state.error or "")
        cable.plug()
        try:
            await eventually(lambda: scanner.state.connected)
            cable.send(b"R7G6915415\r")
            assert isinstance(await next_event(scanner), ScannedFrame)
        finally:
            cable.unplug()


def events_of(splitter: FrameSplitter, chunks: list[bytes]) -> list[tuple[str, bytes | int]]:
    out: list[tuple[str, bytes | int]] = []
    for chunk in chunks:
        for e in splitter.feed(chunk, 0):
            out.append(("frame", e.data) if isinstance(e, ScannedFrame) else (e.problem, e.size))
    return out


@given(
    stream=st.lists(
        st.binary(max_size=40) | st.sampled_from([b"\r\n", b"\r", b"\n"]), max_size=30
    ).map(b"".join),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_splitting_does_not_depend_on_how_bytes_arrive(stream: bytes, cuts: list[int]) -> None:
    whole = events_of(FrameSplitter(b"\r\n", 32), [stream])
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert events_of(FrameSplitter(b"\r\n", 32), pieces) == whole
    for kind, value in whole:
        if kind == "frame":
            assert isinstance(value, bytes)
            assert len(value) <= 32
            assert b"\r\n" not in value


def test_splitter_memory_is_bounded() -> None:
    splitter = FrameSplitter(b"\r", 128)
    for _ in range(1000):
        assert splitter.feed(b"x" * 1000, 0) == []
    assert len(splitter._buf) <= 128
    flushed = splitter.flush(0)
    assert flushed is not None
    assert (flushed.problem, flushed.size) == ("too_long", 1_000_000)
