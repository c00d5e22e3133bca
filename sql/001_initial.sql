-- hesgate depot: the first schema.
-- Applied by `hes-depot migrate` in one transaction; never edit once applied
-- anywhere: add a new numbered file instead.

-- ---------------------------------------------------------------- devices

-- One row per validator ever enrolled. The request-signing secret is stored
-- AES-256-GCM encrypted under the depot's field key (depot_sync/crypto.py),
-- bound to the device id.
CREATE TABLE devices (
    id           text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    secret_enc   bytea NOT NULL,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    vehicle      text,
    enrolled_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_seen_at timestamptz
);

-- What the depot holds of each device's tap sequence: every sequence number
-- 1..ack is stored, and every one up to max_seq except those in tap_gaps.
-- This row is the authority on duplicates (see docs/depot.md, "Ingest").
CREATE TABLE device_sync (
    device_id     text PRIMARY KEY REFERENCES devices (id),
    ack           bigint NOT NULL DEFAULT 0 CHECK (ack >= 0),
    max_seq       bigint NOT NULL DEFAULT 0 CHECK (max_seq >= ack),
    taps_stored   bigint NOT NULL DEFAULT 0,
    last_batch_at timestamptz
);

-- Sequence numbers above a device's ack that it has not sent (yet).
CREATE TABLE tap_gaps (
    device_id  text NOT NULL REFERENCES devices (id),
    first_seq  bigint NOT NULL,
    last_seq   bigint NOT NULL,
    noticed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, first_seq),
    CHECK (first_seq >= 1 AND first_seq <= last_seq)
);

-- The last heartbeat of each device.
CREATE TABLE device_status (
    device_id        text PRIMARY KEY REFERENCES devices (id),
    received_at      timestamptz NOT NULL,
    device_time_ms   bigint NOT NULL,
    clock_skew_ms    bigint NOT NULL,
    software         text NOT NULL,
    last_seq         bigint NOT NULL,
    backlog          bigint NOT NULL,
    oldest_unsent_ms bigint,
    list_version     bigint NOT NULL,
    list_age_s       bigint,
    policy_version   bigint NOT NULL,
    online_failures  bigint NOT NULL
);

-- Request nonces seen inside the signing window (replay protection).
CREATE TABLE request_nonces (
    device_id  text NOT NULL,
    nonce      text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (device_id, nonce)
);
CREATE INDEX request_nonces_expiry ON request_nonces (expires_at);

-- ------------------------------------------------------------ credentials

-- Every credential the depot knows: HES codes (kind 1) and transit cards
-- (kind 2). `key` is the risk-list key (protocol/credentials.py). The raw
-- HES code or card UID is stored only AES-256-GCM encrypted (value_enc),
-- bound to the key. A card carries the Ministry state of the HES code it is
-- linked to (hes_key), copied by the triggers below.
CREATE TABLE credentials (
    key              bytea PRIMARY KEY CHECK (length(key) = 8),
    kind             smallint NOT NULL CHECK (kind IN (1, 2)),
    value_enc        bytea NOT NULL,
    hes_key          bytea REFERENCES credentials (key),
    ministry_state   text NOT NULL DEFAULT 'unchecked'
                     CHECK (ministry_state IN ('unchecked', 'found', 'not_found', 'expired')),
    status           smallint CHECK (status IN (0, 1)),
    expires_at       timestamptz,
    expiry_day       integer CHECK (expiry_day BETWEEN 0 AND 65534),
    tckn_last3       text CHECK (tckn_last3 ~ '^[0-9]{3}$'),
    registered_last3 text CHECK (registered_last3 ~ '^[0-9]{3}$'),
    birth_year       smallint CHECK (birth_year BETWEEN 1880 AND 2200),
    groups           smallint NOT NULL DEFAULT 0 CHECK (groups >= 0),
    source           text NOT NULL CHECK (source IN ('registration', 'online_check')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_checked_at  timestamptz,
    CHECK ((kind = 2) = (hes_key IS NOT NULL)),
    CHECK (ministry_state <> 'found' OR status IS NOT NULL)
);
CREATE INDEX credentials_cards_of_code ON credentials (hes_key) WHERE hes_key IS NOT NULL;
CREATE INDEX credentials_recheck ON credentials (last_checked_at NULLS FIRST) WHERE kind = 1;

-- Every change to the published risk list, one version each, from one
-- sequence. Written only by the trigger on credentials, so the list a
-- snapshot plus its deltas describe is exactly the credentials table's.
CREATE SEQUENCE list_version_seq AS bigint START 1;
CREATE TABLE list_changes (
    version    bigint PRIMARY KEY,
    key        bytea NOT NULL CHECK (length(key) = 8),
    removed    boolean NOT NULL,
    status     smallint NOT NULL,
    expiry_day integer,
    tckn_last3 text,
    groups     smallint NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- One row: changes with versions up to compacted_through have been deleted,
-- so a delta must start at or after it.
CREATE TABLE list_state (
    id                 boolean PRIMARY KEY DEFAULT true CHECK (id),
    compacted_through  bigint NOT NULL DEFAULT 0
);
INSERT INTO list_state DEFAULT VALUES;

-- A credential is on the list when the Ministry found its HES code.
CREATE FUNCTION credential_listed(state text, status smallint) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT state = 'found' AND status IS NOT NULL $$;

-- Record a list change whenever a credential's list entry appears, changes
-- or disappears. The transaction-scoped advisory lock orders writers so that
-- versions become visible in order: a delta reader never skips a version
-- that commits later. (Writers take the same lock first, to avoid deadlocks.)
CREATE FUNCTION credentials_list_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_listed boolean := false;
    new_listed boolean := false;
    old_last3  text;
    new_last3  text;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_listed := credential_listed(OLD.ministry_state, OLD.status);
        old_last3 := coalesce(OLD.tckn_last3, OLD.registered_last3);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_listed := credential_listed(NEW.ministry_state, NEW.status);
        new_last3 := coalesce(NEW.tckn_last3, NEW.registered_last3);
    END IF;
    IF NOT old_listed AND NOT new_listed THEN
        RETURN NULL;
    END IF;
    IF old_listed AND new_listed
       AND (OLD.status, OLD.expiry_day, old_last3, OLD.groups)
           IS NOT DISTINCT FROM (NEW.status, NEW.expiry_day, new_last3, NEW.groups) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(4851001);
    IF new_listed THEN
        INSERT INTO list_changes (version, key, removed, status, expiry_day, tckn_last3, groups)
        VALUES (nextval('list_version_seq'), NEW.key, false, NEW.status, NEW.expiry_day,
                new_last3, NEW.groups);
    ELSE
        INSERT INTO list_changes (version, key, removed, status, expiry_day, tckn_last3, groups)
        VALUES (nextval('list_version_seq'), OLD.key, true, 0, NULL, NULL, 0);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER credentials_list_change
AFTER INSERT OR UPDATE OR DELETE ON credentials
FOR EACH ROW EXECUTE FUNCTION credentials_list_change();

-- A card takes the Ministry state of its HES code when linked.
CREATE FUNCTION card_takes_code_state() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    code credentials%ROWTYPE;
BEGIN
    IF NEW.kind <> 2 THEN
        RETURN NEW;
    END IF;
    SELECT * INTO code FROM credentials WHERE key = NEW.hes_key;
    IF FOUND THEN
        NEW.ministry_state := code.ministry_state;
        NEW.status := code.status;
        NEW.expires_at := code.expires_at;
        NEW.expiry_day := code.expiry_day;
        NEW.tckn_last3 := code.tckn_last3;
        NEW.last_checked_at := code.last_checked_at;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER card_takes_code_state_insert
BEFORE INSERT ON credentials
FOR EACH ROW EXECUTE FUNCTION card_takes_code_state();
CREATE TRIGGER card_takes_code_state_relink
BEFORE UPDATE OF hes_key ON credentials
FOR EACH ROW WHEN (OLD.hes_key IS DISTINCT FROM NEW.hes_key)
EXECUTE FUNCTION card_takes_code_state();

-- When the Ministry's answer for a HES code changes, its cards follow.
CREATE FUNCTION code_state_to_cards() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE credentials c
       SET ministry_state = NEW.ministry_state,
           status = NEW.status,
           expires_at = NEW.expires_at,
           expiry_day = NEW.expiry_day,
           tckn_last3 = NEW.tckn_last3,
           last_checked_at = NEW.last_checked_at
     WHERE c.hes_key = NEW.key;
    RETURN NULL;
END $$;

CREATE TRIGGER code_state_to_cards
AFTER UPDATE ON credentials
FOR EACH ROW
WHEN (NEW.kind = 1 AND (OLD.ministry_state, OLD.status, OLD.expires_at, OLD.expiry_day,
                        OLD.tckn_last3)
      IS DISTINCT FROM (NEW.ministry_state, NEW.status, NEW.expires_at, NEW.expiry_day,
                        NEW.tckn_last3))
EXECUTE FUNCTION code_state_to_cards();

-- updated_at moves only when something other than bookkeeping changed.
CREATE FUNCTION credentials_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.kind, OLD.value_enc, OLD.hes_key, OLD.ministry_state, OLD.status, OLD.expires_at,
        OLD.expiry_day, OLD.tckn_last3, OLD.registered_last3, OLD.birth_year, OLD.groups,
        OLD.source)
       IS DISTINCT FROM
       (NEW.kind, NEW.value_enc, NEW.hes_key, NEW.ministry_state, NEW.status, NEW.expires_at,
        NEW.expiry_day, NEW.tckn_last3, NEW.registered_last3, NEW.birth_year, NEW.groups,
        NEW.source) THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER credentials_touch
BEFORE UPDATE ON credentials
FOR EACH ROW EXECUTE FUNCTION credentials_touch();

-- Published snapshot files (the newest is served; older ones are deleted).
CREATE TABLE snapshots (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    list_version bigint NOT NULL,
    file_name    text NOT NULL UNIQUE,
    entries      bigint NOT NULL,
    size_bytes   bigint NOT NULL,
    sha256       text NOT NULL,
    key_id       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- ------------------------------------------------------------------- taps

-- Tap records, partitioned by UTC day on the tap's own time (time_ms), so a
-- day is one range [midnight, next midnight) in ms since the epoch and drops
-- whole. (device_id, seq) is unique: device_sync / tap_gaps decide what is new
-- (see docs/depot.md, "Ingest"), and the unique index below guards it (a
-- partitioned table's unique index must contain the partition key; a record
-- sent again carries the same time, so the guard still catches it).
CREATE TABLE taps (
    seq          bigint NOT NULL,
    time_ms      bigint NOT NULL,
    method       smallint,
    key          bytea,
    decision     smallint NOT NULL,
    reason       smallint NOT NULL,
    decided_by   smallint NOT NULL,
    list_version bigint NOT NULL,
    latency_us   bigint NOT NULL,
    vehicle      text NOT NULL,
    route        text NOT NULL,
    trip         text NOT NULL,
    lat          double precision,
    lon          double precision,
    device_id    text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (time_ms);
CREATE UNIQUE INDEX taps_device_seq ON taps (device_id, seq, time_ms);

-- Days without their own partition (a device clock far off, or a day not
-- created yet) land here; ensure_tap_partition moves them out.
CREATE TABLE taps_default PARTITION OF taps DEFAULT;

-- The first ms of UTC day d.
CREATE FUNCTION day_start_ms(d date) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT (d - date '1970-01-01')::bigint * 86400000 $$;

-- Create the partition of UTC day d (if missing), moving its rows out of the default partition.
CREATE FUNCTION ensure_tap_partition(d date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    name text := 'taps_' || to_char(d, 'YYYYMMDD');
    lo   bigint := day_start_ms(d);
    hi   bigint := day_start_ms(d + 1);
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(4851002);
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE taps INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    EXECUTE format('INSERT INTO %I SELECT * FROM taps_default WHERE time_ms >= %s AND time_ms < %s',
                   name, lo, hi);
    EXECUTE format('DELETE FROM taps_default WHERE time_ms >= %s AND time_ms < %s', lo, hi);
    EXECUTE format('ALTER TABLE taps ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                   name, lo, hi);
    RETURN true;
END $$;

-- -------------------------------------------------------------- operators

CREATE TABLE operators (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    role        text NOT NULL CHECK (role IN ('ops', 'auditor', 'admin')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

-- Bearer tokens, stored as SHA-256 of the token (tokens are 256-bit random).
CREATE TABLE operator_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operator_id  bigint NOT NULL REFERENCES operators (id),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Every export an operator ran: who, what filters, how many rows.
CREATE TABLE export_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operator_id bigint NOT NULL REFERENCES operators (id),
    kind        text NOT NULL,
    format      text NOT NULL,
    filters     jsonb NOT NULL,
    remote      text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    rows        bigint,
    outcome     text NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'done', 'failed'))
);
