"""Starting the stack: a part that cannot start stops the rest, and says why."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import aiohttp
import pytest

from deploy.demo.configs import policy_barring
from deploy.demo.stack import Stack, StackError, StackSpec, free_port


async def test_a_depot_that_cannot_start_stops_everything_started_before_it(
    tmp_path: Path,
) -> None:
    nowhere = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    spec = StackSpec(
        root=tmp_path / "stack",
        policy=policy_barring(dt.datetime.now(dt.UTC)),
        population_size=50,
        dsn=nowhere,
    )
    async with aiohttp.ClientSession() as session:
        stack = Stack(spec, session)
        with pytest.raises(StackError, match=r"the depot did not start(.|\n)*database"):
            async with stack:
                pytest.fail("the stack must not start without its database")
    assert stack.running() == []
    assert (tmp_path / "stack" / "logs" / "ministry.log").exists()
