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

-- Bumped by every change of the lease table, so an append can tell that nothing
-- about its leases changed since it last checked them all.
CREATE TABLE rollback_journal.lease_generation (
    id         INT PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO rollback_journal.lease_generation VALUES (1, 0);
CREATE FUNCTION rollback_journal.bump_lease_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rollback_journal.lease_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER leases_changed AFTER INSERT OR UPDATE OR DELETE ON rollback_journal.leases
    FOR EACH STATEMENT EXECUTE FUNCTION rollback_journal.bump_lease_generation();

CREATE TABLE rollback_journal.runs (
    run        TEXT PRIMARY KEY,
    plan       TEXT NOT NULL,
    -- The host id of the runner that started it (its run_started record's).
    host       TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    -- The next record's sequence number; its row lock orders a run's writers.
    next_seq   BIGINT NOT NULL,
    -- The last full check of this run's fence: its token, the lease generation then,
    -- and until when its leases were valid (NULL: not cacheable, another lock's).
    checked_token      BIGINT,
    checked_generation BIGINT,
    checked_until      TIMESTAMPTZ,
    -- The resources of that fence, so a writer sends them once per lease.
    fence_resources    TEXT[]
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

-- The newest fencing token seen per resource: by appends under other locks, and every
-- token the lease table granted (so a writer whose lease was taken over, then released
-- by its new holder, still finds a newer token there).
CREATE TABLE rollback_journal.fences (
    resource TEXT PRIMARY KEY,
    token    BIGINT NOT NULL
);
CREATE FUNCTION rollback_journal.record_lease_token() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollback_journal.fences AS f (resource, token) VALUES (NEW.resource, NEW.token)
        ON CONFLICT ON CONSTRAINT fences_pkey DO UPDATE SET token = EXCLUDED.token WHERE f.token < EXCLUDED.token;
    RETURN NULL;
END
$$;
CREATE TRIGGER lease_tokens AFTER INSERT OR UPDATE OF token ON rollback_journal.leases
    FOR EACH ROW EXECUTE FUNCTION rollback_journal.record_lease_token();

-- One append of one or more entries, in one round trip. Fencing first: every
-- resource of the writer's fence must have a lease row (the lock is the lease table)
-- holding the writer's token, unexpired by this server's clock; resources with no
-- lease row (another kind of lock) must not have seen a newer token. Lease changes
-- (PgLeaseLock's acquire and renew) hold the advisory key 'rollback-leases'
-- exclusively; the append holds it shared, so a takeover cannot commit between this
-- check and this write (the effect of FOR SHARE on the lease rows, without writing a
-- row lock into every one at every append). The full check is skipped when the run's
-- last one was for the same token, no lease has changed since (the generation), and
-- its leases were valid past now. A writer sends its fence's resources with the
-- first append under a token; later appends send the token alone (p_resources NULL)
-- and the resources recorded with the run are used (RB002 if there are none: the
-- writer sends them again). Then the run's row (its next_seq) is
-- locked and advanced, so writers never interleave or repeat a sequence number.
-- Buffered appends commit without waiting for the WAL flush (made durable by the
-- next synchronous commit, as the file journal's next fsync).
CREATE FUNCTION rollback_journal.append(
    p_run TEXT, p_resources TEXT[], p_token BIGINT, p_entries JSONB, p_sync BOOLEAN
) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    n         INT := jsonb_array_length(p_entries);
    first_seq BIGINT;
    held      INT;
    lease     RECORD;
    fence     RECORD;
    gen       BIGINT;
    until     TIMESTAMPTZ;
    cached    RECORD;
BEGIN
    IF NOT p_sync THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    IF p_token IS NOT NULL AND p_resources IS NULL THEN
        SELECT r.fence_resources INTO p_resources FROM rollback_journal.runs r
         WHERE r.run = p_run AND r.checked_token = p_token;
        IF p_resources IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'RB002', MESSAGE = 'fence resources not known for this token';
        END IF;
    END IF;
    IF p_resources IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('rollback-leases', 0));
        SELECT generation INTO gen FROM rollback_journal.lease_generation WHERE id = 1;
        SELECT r.checked_token, r.checked_generation, r.checked_until, r.fence_resources INTO cached
          FROM rollback_journal.runs r WHERE r.run = p_run;
        IF FOUND AND cached.checked_token = p_token AND cached.checked_generation = gen
           AND cached.checked_until > now() AND cached.fence_resources = p_resources THEN
            until := cached.checked_until;
        ELSE
        SELECT count(*), min(l.expires_at) INTO held, until FROM rollback_journal.leases l
         WHERE l.resource = ANY (p_resources) AND l.token = p_token AND l.expires_at > now();
        IF held < cardinality(p_resources) THEN
            until := NULL;
            SELECT l.resource, l.token, l.expires_at, l.host, l.pid INTO lease FROM rollback_journal.leases l
             WHERE l.resource = ANY (p_resources) AND l.token <> p_token LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'RB001', MESSAGE = format(
                    'stale fencing token %s for %L: the lease is held with token %s by pid %s on %s; '
                    'this writer lost its lease', p_token, lease.resource, lease.token, lease.pid, lease.host);
            END IF;
            SELECT l.resource, l.expires_at INTO lease FROM rollback_journal.leases l
             WHERE l.resource = ANY (p_resources) AND l.expires_at <= now() LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'RB001', MESSAGE = format(
                    'stale fencing token %s for %L: the lease expired at %s (database clock)',
                    p_token, lease.resource, lease.expires_at);
            END IF;
            INSERT INTO rollback_journal.fences AS f (resource, token)
                SELECT r, p_token FROM unnest(p_resources) AS r
                 WHERE NOT EXISTS (SELECT 1 FROM rollback_journal.leases l WHERE l.resource = r)
                ON CONFLICT ON CONSTRAINT fences_pkey DO UPDATE SET token = EXCLUDED.token
                 WHERE f.token < EXCLUDED.token;
            SELECT f.resource, f.token INTO fence FROM rollback_journal.fences f
             WHERE f.resource = ANY (p_resources) AND f.token > p_token LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'RB001', MESSAGE = format(
                    'stale fencing token %s for %L: a newer holder has token %s', p_token, fence.resource, fence.token);
            END IF;
        END IF;
        END IF;
    END IF;
    INSERT INTO rollback_journal.runs AS r
        (run, plan, host, next_seq, checked_token, checked_generation, checked_until, fence_resources)
        VALUES (p_run, COALESCE(p_entries -> 0 -> 'plan' ->> 'name', ''), COALESCE(p_entries -> 0 ->> 'host', ''), 1 + n,
                p_token, gen, until, p_resources)
        ON CONFLICT ON CONSTRAINT runs_pkey DO UPDATE SET next_seq = r.next_seq + n,
            checked_token = CASE WHEN p_resources IS NULL THEN r.checked_token ELSE EXCLUDED.checked_token END,
            checked_generation = CASE WHEN p_resources IS NULL THEN r.checked_generation ELSE EXCLUDED.checked_generation END,
            checked_until = CASE WHEN p_resources IS NULL THEN r.checked_until ELSE EXCLUDED.checked_until END,
            fence_resources = CASE WHEN p_resources IS NULL THEN r.fence_resources ELSE EXCLUDED.fence_resources END
        RETURNING r.next_seq - n INTO first_seq;
    INSERT INTO rollback_journal.records (run, seq, token, at, entry)
        SELECT p_run, first_seq + t.ord - 1, COALESCE(p_token, 0), clock_timestamp(), t.e
          FROM jsonb_array_elements(p_entries) WITH ORDINALITY AS t(e, ord);
    -- Waiters (gates) wait for other processes' unfenced records (approvals); the
    -- engine's own fenced appends notify nobody (a NOTIFY serializes commits).
    IF p_token IS NULL THEN
        PERFORM pg_notify('rollback_journal', p_run);
    END IF;
    RETURN first_seq + n - 1;
END
$$;
