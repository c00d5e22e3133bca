"""The depot's PostgreSQL: the embedded server, the connection pool and the migrations."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

#: A connection, whether opened directly or taken from a pool.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
#: Something queries can run on: a connection or the pool itself.
Queryable: TypeAlias = "Conn | asyncpg.Pool[asyncpg.Record]"
