-- hesgate depot: tell every depot process when the risk list's head or its snapshots change.
-- Each `serve` keeps the list's head version and the newest snapshot row in memory
-- (depot_sync/risklist/watch.py) and LISTENs on this channel to drop them. PostgreSQL
-- delivers a notification at commit, once per transaction and payload however many rows
-- changed, and nothing for a transaction that changed nothing.

CREATE FUNCTION notify_list_watchers() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV[0]: 'head' (the list's version or horizon) or 'snapshot' (published files).
    PERFORM pg_notify('hesgate_list', TG_ARGV[0]);
    RETURN NULL;
END $$;

-- A new version. (Deleting changes, as compaction does, moves the horizon in list_state.)
CREATE TRIGGER list_changes_notify
AFTER INSERT ON list_changes
FOR EACH ROW EXECUTE FUNCTION notify_list_watchers('head');

CREATE TRIGGER list_changes_truncate_notify
AFTER TRUNCATE ON list_changes
FOR EACH STATEMENT EXECUTE FUNCTION notify_list_watchers('head');

CREATE TRIGGER list_state_notify
AFTER UPDATE ON list_state
FOR EACH ROW WHEN (OLD.compacted_through IS DISTINCT FROM NEW.compacted_through)
EXECUTE FUNCTION notify_list_watchers('head');

CREATE TRIGGER snapshots_notify
AFTER INSERT OR UPDATE OR DELETE ON snapshots
FOR EACH ROW EXECUTE FUNCTION notify_list_watchers('snapshot');

CREATE TRIGGER snapshots_truncate_notify
AFTER TRUNCATE ON snapshots
FOR EACH STATEMENT EXECUTE FUNCTION notify_list_watchers('snapshot');
