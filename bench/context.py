"""What every section shares: the settings, the scratch directories, the lists, the servers."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.depot import DepotStack
from bench.lists import ListStore
from bench.postgres import Postgres
from bench.settings import BenchConfig
from runtime.config import ConfigError


class BenchFailure(RuntimeError):
    """The code under measure did something wrong (lost a tap, answered wrongly): no figure."""


class Context:
    """One benchmark run; starts PostgreSQL and the depot only when a section first needs them.

    ``data_dir/run`` is emptied at the start of each run; ``data_dir/lists``
    and ``data_dir/pg`` keep what is slow to make (big lists, seeded
    databases) for the next run unless ``fresh`` is set.
    """

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.run_dir = self.data_dir / "run"
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        self.lists = ListStore(self.data_dir / "lists", fresh=config.fresh)
        #: What the run was measured on, beyond the machine (PostgreSQL settings...).
        self.notes: dict[str, str] = {}
        self._postgres: Postgres | None = None
        self._depot: DepotStack | None = None

    @property
    def pg_dir(self) -> Path:
        """The bench's own embedded PostgreSQL cluster."""
        return self.data_dir / "pg"

    async def postgres(self) -> Postgres:
        """The bench's PostgreSQL server, started on first use."""
        if self._postgres is None:
            server = Postgres(self.pg_dir, fresh=self.config.fresh)
            await server.start()
            self._postgres = server
            self.notes.update(await server.describe())
        return self._postgres

    async def depot(self) -> DepotStack:
        """The depot (``hes-depot serve`` in its own process), started on first use."""
        if self._depot is None:
            postgres = await self.postgres()
            devices = max((*self.config.ingest.validators, self.config.delta_polls.concurrency))
            stack = DepotStack(postgres, self.run_dir / "depot", devices=devices)
            try:
                await stack.start()
            except BaseException:
                await stack.stop()
                raise
            self._depot = stack
        return self._depot

    async def close(self) -> None:
        """Stop whatever was started, the depot first."""
        if self._depot is not None:
            # Read at the end: by then the depot has long logged how it set itself up.
            try:
                self.notes.update(self._depot.settings())
            except (OSError, ConfigError) as err:
                self.notes["depot settings"] = f"not readable: {err}"
            await self._depot.stop()
            self._depot = None
        if self._postgres is not None:
            await self._postgres.stop()
            self._postgres = None
