"""One structlog setup for every hesgate program.

JSON lines when stderr is not a terminal (production, journald), a readable
coloured console when it is. Standard-library loggers (aiohttp's access log,
asyncpg) go through the same processors so every line has one shape. Every
program's configuration reads its ``[log]`` table into :class:`LogSection`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

#: Key names whose values never reach a log line, whatever a caller binds.
SECRET_KEYS: frozenset[str] = frozenset(
    {"password", "secret", "authorization", "token", "list_key", "device_secret", "dsn_password"}
)
REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class LogSection:
    """Every program's ``[log]`` table, as :func:`configure_logging` takes it."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``None``: JSON unless stderr is a terminal.
    json: bool | None = None


def redact_secrets(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Replace the value of any key that names a secret.

    A safety net, not the only guard: code must not bind secrets at all.
    """
    for key in event_dict:
        if key.lower() in SECRET_KEYS:
            event_dict[key] = REDACTED
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]


def configure_logging(
    level: str = "info",
    *,
    json: bool | None = None,
    stream: TextIO | None = None,
    quiet_loggers: Iterable[str] = ("asyncio",),
) -> None:
    """Configure structlog and the standard library's logging once, at start.

    ``json=None`` picks JSON unless ``stream`` is a terminal.
    """
    out = stream if stream is not None else sys.stderr
    use_json = not out.isatty() if json is None else json
    renderer: Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer()
        exc: list[Processor] = [structlog.processors.dict_tracebacks]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        exc = []

    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}")

    shared = _shared_processors()
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exc,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    for name in quiet_loggers:
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))
