"""One validator process: every part built from the configuration, started, and stopped cleanly.

The parts and the tasks that drive them:

* the scanner reads frames; the gate answers them (and keypad entries);
* the tap queue stores every answer before it is shown;
* the uploader drains the queue, the list sync and the policy store keep
  the list and the policy current, the heartbeat reports to the depot;
* the status board and the screen app show it all on the bus.

Each task is supervised: a bug that escapes one is logged with its traceback
and the task starts again, so the box keeps answering riders.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Final

import structlog
from aiohttp import web

from validator.answer import Answer
from validator.config import ValidatorConfig, list_verifier
from validator.decide import list_is_stale
from validator.depot_client import DepotClient
from validator.gate import Gate
from validator.heartbeat import HeartbeatAgent, Wakers
from validator.listsync import ListSync
from validator.policy import PolicyStore
from validator.queue import TapQueue
from validator.risklist import RiskList
from validator.scanner import Scanner, ScannerState
from validator.screen import make_screen_app
from validator.status import ListState, Sources, StatusBoard
from validator.uploader import Uploader

log = structlog.get_logger(__name__)

TAPS_DB: Final = "taps.db"
#: How often unstored taps are tried again while the disk refuses writes.
STORAGE_RETRY_S: Final = 2.0
#: A supervised task that crashed starts again after this long.
RESTART_DELAY_S: Final = 1.0


def software_version() -> str:
    """What the heartbeat reports as this program's version."""
    try:
        version = metadata.version("hesgate")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return f"hesgate-validator/{version}"


class Validator:
    """The whole validator, as an async context manager."""

    def __init__(self, config: ValidatorConfig, *, clock: Callable[[], float] = time.time) -> None:
        """Build every part (nothing runs before :meth:`start`); a bad key is a ConfigError."""
        self.config = config
        device = config.device.id
        data_dir = config.storage.data_dir
        self._log = log.bind(device=device)
        self.verifier = list_verifier(config)
        self.queue = TapQueue(
            data_dir / TAPS_DB,
            retention_s=config.storage.retention_s,
            max_db_bytes=config.storage.max_db_mb * 1024 * 1024,
            pending_limit=config.storage.pending_limit,
        )
        self.risk_list = RiskList(data_dir, self.verifier)
        self.policy = PolicyStore(data_dir, self.verifier)
        self.client = DepotClient(
            base_url=config.depot.url,
            device_id=device,
            secret=config.device.secret_bytes,
            request_timeout_s=config.depot.request_timeout_s,
            clock_skew_bound_s=config.sync.clock_skew_bound_s,
            ca_file=config.depot.ca_file,
            clock=clock,
        )
        self.scanner = Scanner(config.scanner, on_state=self._scanner_changed)
        self.board = StatusBoard(
            device=device,
            software=software_version(),
            idle_s=config.screen.idle_s,
            clock=clock,
            sources=Sources(
                queue=self.queue.stats,
                risk_list=self._list_state,
                policy_version=lambda: self.policy.current.version,
                link=lambda: self.client.link_state(self.gate.online_failures),
                scanner=lambda: self.scanner.state,
                upload_error=lambda: self.uploader.problem,
            ),
        )
        self.uploader = Uploader(
            queue=self.queue,
            client=self.client,
            device_id=device,
            config=config.upload,
            clock=clock,
        )
        self.gate = Gate(
            list_key=config.device.list_key_bytes,
            risk_list=self.risk_list,
            policy=self.policy,
            checker=self.client,
            queue=self.queue,
            show=self._show,
            vehicle=config.vehicle.vehicle,
            route=config.vehicle.route,
            trip=config.vehicle.trip,
            online_budget_s=config.depot.online_budget_ms / 1000,
            online_reserve_s=config.depot.online_reserve_ms / 1000,
            clock=clock,
        )
        self.list_sync = ListSync(
            client=self.client,
            risk_list=self.risk_list,
            data_dir=data_dir,
            config=config.sync,
            read_timeout_s=config.depot.request_timeout_s,
        )
        self.heartbeat = HeartbeatAgent(
            client=self.client,
            device_id=device,
            software=software_version(),
            queue=self.queue,
            risk_list=self.risk_list,
            policy=self.policy,
            online_failures=lambda: self.gate.online_failures,
            wakers=Wakers(list_sync=self.list_sync.wake.set, policy=self.policy.wake.set),
            config=config.sync,
            clock=clock,
        )
        self.client.on_reconnect(self._reconnected)
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.screen_url: str | None = None

    # -- glue ----------------------------------------------------------------------------

    def _show(self, answer: Answer) -> None:
        self.board.show(answer)
        self.uploader.tapped()

    def _scanner_changed(self, _state: ScannerState) -> None:
        self.board.changed()

    def _reconnected(self) -> None:
        self.list_sync.wake.set()
        self.policy.wake.set()
        self.uploader.resume.set()

    def _list_state(self) -> ListState:
        age = self.risk_list.age_s(int(self._clock() * 1000))
        return ListState(
            version=self.risk_list.version,
            snapshot_version=self.risk_list.snapshot_version,
            age_s=age,
            stale=list_is_stale(age, self.policy.current),
            problem=self.risk_list.problem or self.list_sync.problem,
        )

    async def _retry_storage(self) -> None:
        while True:
            await asyncio.sleep(STORAGE_RETRY_S)
            if self.queue.stats().pending_in_memory and self.queue.retry_pending():
                self.board.changed()
                self.uploader.tapped()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Load what is on disk, open the screen, start every task."""
        await self.risk_list.load()
        self.policy.load()
        app = make_screen_app(self.board, self.gate.tap_keypad)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.screen.host, self.config.screen.port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.screen_url = f"http://{host}:{port}"
        jobs: dict[str, Callable[[], Awaitable[None]]] = {
            "scanner": self.scanner.run,
            "gate": lambda: self.gate.run(self.scanner.events),
            "uploader": self.uploader.run,
            "list_sync": self.list_sync.run,
            "policy": lambda: self.policy.run(self.client, self.config.sync),
            "heartbeat": self.heartbeat.run,
            "status": self.board.watch,
            "storage_retry": self._retry_storage,
        }
        self._tasks = [
            asyncio.create_task(self._supervise(name, job), name=f"validator-{name}")
            for name, job in jobs.items()
        ]
        # Once, while the gate already answers: a list opened on its file identity
        # alone gets its whole body checked in the list's thread.
        self._tasks.append(
            asyncio.create_task(self._check_kept_list(), name="validator-list-check")
        )
        self._log.info(
            "validator_started",
            screen=self.screen_url,
            scanner=self.config.scanner.port,
            depot=self.config.depot.url,
            list_version=self.risk_list.version,
            policy_version=self.policy.current.version,
            last_seq=self.queue.last_seq,
            software=software_version(),
        )

    async def _check_kept_list(self) -> None:
        if not await self.risk_list.verify_kept():
            # Dropped as damaged: the screen says so, and a new snapshot is fetched now.
            self.board.changed()
            self.list_sync.wake.set()

    async def _supervise(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug in one part must not stop the gate
                self._log.exception("task_crashed_restarting", task=name)
            else:
                self._log.error("task_ended_restarting", task=name)
            await asyncio.sleep(RESTART_DELAY_S)

    async def stop(self) -> None:
        """Stop every task, close the screen, the connections and the stores."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.client.close()
        await self.risk_list.close()
        self.queue.close()
        self._log.info("validator_stopped", last_seq=self.queue.last_seq)

    async def __aenter__(self) -> Validator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
