-- Request nonces need no write-ahead log: they matter for the few minutes of
-- the signing window, and every signed request inserts one, so a logged
-- table made each request wait for a WAL flush of its own. After a database
-- crash PostgreSQL empties an unlogged table: a request captured in the
-- minutes before could then be replayed once, and every validator endpoint
-- is idempotent or harmless to repeat (a tap batch stores nothing twice; a
-- heartbeat or an online check only refreshes what the depot knows).
ALTER TABLE request_nonces SET UNLOGGED;
