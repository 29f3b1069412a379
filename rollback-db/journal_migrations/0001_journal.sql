-- The shared journal (rollback_db::PgJournal): runs, their records, the fencing
-- tokens seen, and the leases PgLeaseLock grants from the same database, so the
-- token an append is checked against is the one the lock granted.

CREATE TABLE rollback_journal.leases (
    resource   TEXT PRIMARY KEY,
    run        TEXT NOT NULL,
    pid        BIGINT NOT NULL,
    host       TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE SEQUENCE rollback_journal.leases_token;

CREATE TABLE rollback_journal.runs (
    run        TEXT PRIMARY KEY,
    plan       TEXT NOT NULL,
    -- The host id of the runner that started it (its run_started record's).
    host       TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    -- The next record's sequence number; its row lock orders a run's writers.
    next_seq   BIGINT NOT NULL
);
CREATE INDEX runs_started ON rollback_journal.runs (started_at);

CREATE TABLE rollback_journal.records (
    run   TEXT NOT NULL REFERENCES rollback_journal.runs (run),
    seq   BIGINT NOT NULL,
    token BIGINT NOT NULL,
    at    TIMESTAMPTZ NOT NULL,
    entry JSONB NOT NULL,
    PRIMARY KEY (run, seq)
);

-- The newest fencing token seen per resource (for locks other than the lease table).
CREATE TABLE rollback_journal.fences (
    resource TEXT PRIMARY KEY,
    token    BIGINT NOT NULL
);

-- One append of one or more entries, in one round trip. Fencing first: for every
-- resource of the writer's fence, a lease row (if the lock is the lease table) must
-- hold the writer's token and be unexpired by this server's clock, read FOR SHARE so
-- a concurrent takeover is waited for; and no newer token may have been seen. Then
-- the run's row (its next_seq) is locked and advanced, so writers never interleave or
-- repeat a sequence number. Buffered appends commit without waiting for the WAL flush
-- (made durable by the next synchronous commit, as the file journal's next fsync).
CREATE FUNCTION rollback_journal.append(
    p_run TEXT, p_resources TEXT[], p_token BIGINT, p_entries JSONB, p_sync BOOLEAN
) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    n        INT := jsonb_array_length(p_entries);
    first_seq BIGINT;
    newest   BIGINT;
    res      TEXT;
    lease    RECORD;
BEGIN
    IF NOT p_sync THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    IF p_resources IS NOT NULL THEN
        FOREACH res IN ARRAY p_resources LOOP
            SELECT l.token, l.expires_at, l.expires_at <= now() AS expired, l.host, l.pid INTO lease
              FROM rollback_journal.leases l WHERE l.resource = res FOR SHARE;
            IF FOUND AND lease.token <> p_token THEN
                RAISE EXCEPTION USING ERRCODE = 'RB001', MESSAGE = format(
                    'stale fencing token %s for %L: the lease is held with token %s by pid %s on %s; '
                    'this writer lost its lease', p_token, res, lease.token, lease.pid, lease.host);
            END IF;
            IF FOUND AND lease.expired THEN
                RAISE EXCEPTION USING ERRCODE = 'RB001', MESSAGE = format(
                    'stale fencing token %s for %L: the lease expired at %s (database clock)',
                    p_token, res, lease.expires_at);
            END IF;
            INSERT INTO rollback_journal.fences AS f (resource, token) VALUES (res, p_token)
                ON CONFLICT ON CONSTRAINT fences_pkey DO UPDATE SET token = GREATEST(f.token, EXCLUDED.token)
                RETURNING f.token INTO newest;
            IF newest > p_token THEN
                RAISE EXCEPTION USING ERRCODE = 'RB001', MESSAGE = format(
                    'stale fencing token %s for %L: a newer holder has token %s', p_token, res, newest);
            END IF;
        END LOOP;
    END IF;
    INSERT INTO rollback_journal.runs AS r (run, plan, host, next_seq)
        VALUES (p_run, COALESCE(p_entries -> 0 -> 'plan' ->> 'name', ''), COALESCE(p_entries -> 0 ->> 'host', ''), 1 + n)
        ON CONFLICT ON CONSTRAINT runs_pkey DO UPDATE SET next_seq = r.next_seq + n
        RETURNING r.next_seq - n INTO first_seq;
    INSERT INTO rollback_journal.records (run, seq, token, at, entry)
        SELECT p_run, first_seq + t.ord - 1, COALESCE(p_token, 0), clock_timestamp(), t.e
          FROM jsonb_array_elements(p_entries) WITH ORDINALITY AS t(e, ord);
    PERFORM pg_notify('rollback_journal', p_run);
    RETURN first_seq + n - 1;
END
$$;
