//! The schema of one store and the SQL that reads and writes it.
//!
//! Every store lives in a schema of its own (named at connect), so tests
//! run in parallel on one server. Its tables:
//!
//! - `log_head(next_position, last_created_at)`: one row; `next_position`
//!   is the position the next event gets. An insert bumps it inside its
//!   transaction and holds its row lock until `COMMIT`, so positions are
//!   dense and commit in position order: a snapshot always sees a prefix of
//!   the log (see the crate docs).
//! - `streams(stream_id, last_version, last_position, name, category)`: one
//!   row per stream an insert named; both numbers `NULL` for a placeholder
//!   (a stream checked or locked but never written: it does not exist, rule
//!   4); `name` and `category` set by the insert of the stream's first
//!   events if it appended by name (rule 32, migration 5), `NULL` otherwise;
//!   and its lifecycle (rule 30, [`STREAM_LIFECYCLE`]): `deleted_before`,
//!   `visible_from` (every read skips events below it), `tombstoned`,
//!   `max_count`, and (migration 8, [`MAX_AGE`]) `max_age` in microseconds
//!   (every read skips events older than it by the server's clock).
//! - `events(position, stream_id, version, event_id, correlation_id,
//!   created_at, event_type, payload, payload_bytes, causation_id,
//!   headers)`, `UNIQUE (stream_id, version)`; exactly one of `payload`
//!   (`JSONB`) and `payload_bytes` (`BYTEA`) is set, by the codec of the
//!   store that wrote the row (see [`crate::codec`]); `causation_id` and
//!   `headers` (a `JSONB` array of `[key, value]` pairs, in order) are the
//!   event's metadata, `NULL` when it has none (rule 33).
//!
//! `insert_events` is the whole write, one round trip: see [`INSERT_FN`]
//! and, since migration 4, [`INSERT_BYTES_FN`], and since the event
//! metadata migration, [`EVENT_METADATA`].

use crate::error::PgError;

/// The SQLSTATE `insert_events` raises on a version conflict; its DETAIL
/// is a JSON array of the failing streams with what was found.
pub(crate) const CONFLICT_SQLSTATE: &str = "HS409";

/// The SQLSTATE `insert_events` raises on a write to a hard-deleted stream
/// (rule 30); its DETAIL is the stream's id.
pub(crate) const DELETED_SQLSTATE: &str = "HS410";

/// The SQLSTATE `insert_events` raises when a client-supplied event id
/// conflicts (rule 29, since [`IDEMPOTENT_APPENDS`]); its DETAIL is a JSON
/// object: `stream`, `event_id`, `mismatch` (`other_version`,
/// `other_payload`, `other_metadata`, `other_id`, `partial`,
/// `part_of_transaction`), `version` and `expected` (versions or `null`).
pub(crate) const ID_CONFLICT_SQLSTATE: &str = "HS412";

/// The migrations, in order: `(version, SQL)`; `{s}` is the quoted schema,
/// `{channel}` the notification channel. Each runs once per schema, under
/// an advisory lock, in one transaction with its `migrations` row.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, TABLES),
    (2, INSERT_FN),
    (3, BYTE_PAYLOADS),
    (4, INSERT_BYTES_FN),
    (5, STREAM_NAMES),
    (6, STREAM_LIFECYCLE),
    (7, EVENT_METADATA),
    (8, MAX_AGE),
    (9, IDEMPOTENT_APPENDS),
];

const TABLES: &str = r#"
CREATE TABLE {s}.log_head (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    next_position BIGINT NOT NULL CHECK (next_position >= 0),
    last_created_at TIMESTAMPTZ NOT NULL
);
INSERT INTO {s}.log_head (next_position, last_created_at) VALUES (0, '-infinity');
CREATE TABLE {s}.streams (
    stream_id UUID PRIMARY KEY,
    last_version BIGINT CHECK (last_version >= 0),
    last_position BIGINT CHECK (last_position >= 0),
    CHECK ((last_version IS NULL) = (last_position IS NULL))
);
CREATE TABLE {s}.events (
    position BIGINT PRIMARY KEY CHECK (position >= 0),
    stream_id UUID NOT NULL,
    version BIGINT NOT NULL CHECK (version >= 0),
    event_id UUID NOT NULL UNIQUE,
    correlation_id UUID,
    created_at TIMESTAMPTZ NOT NULL,
    event_type TEXT NOT NULL,
    payload JSONB NOT NULL,
    UNIQUE (stream_id, version)
);
"#;

/// The insert, one round trip, READ COMMITTED (until migration 4, which
/// replaces it with [`INSERT_BYTES_FN`]):
///
/// 1. create a placeholder row for every named stream that has none
///    (ascending id order, `ON CONFLICT DO NOTHING`), then lock every named
///    row in ascending id order: two inserts naming the same streams in any
///    order never deadlock (rule 13);
/// 2. check every expectation against the locked rows; on any mismatch raise
///    one error naming every failing stream (rule 7), which rolls back
///    everything, placeholders included: no position is used;
/// 3. take the positions from `log_head` (its row lock held to `COMMIT`),
///    with one timestamp that never goes back (rules 11 and 26);
/// 4. write the events and the new stream heads, return the heads, notify.
///
/// Expectation kinds: 0 Any, 1 NoStream, 2 StreamExists, 3 exact version,
/// 4 exact position, 5 never (an exact value above `i64::MAX`, which no
/// stream can have).
const INSERT_FN: &str = r#"
CREATE FUNCTION {s}.insert_events(
    p_streams UUID[], p_kinds SMALLINT[], p_values BIGINT[], p_counts INT[],
    p_types TEXT[], p_payloads TEXT[], p_correlation UUID
) RETURNS TABLE (out_stream UUID, out_version BIGINT, out_position BIGINT)
LANGUAGE plpgsql SET lock_timeout = '10s' AS $fn$
DECLARE
    n INT := coalesce(array_length(p_streams, 1), 0);
    v_versions BIGINT[] := '{}';
    v_version BIGINT;
    v_position BIGINT;
    v_ok BOOLEAN;
    v_failed JSONB := '[]';
    v_message TEXT := '';
    v_total BIGINT := 0;
    v_next BIGINT;
    v_index INT := 0;
    v_created TIMESTAMPTZ;
BEGIN
    INSERT INTO {s}.streams (stream_id)
        SELECT id FROM unnest(p_streams) AS id ORDER BY id
        ON CONFLICT DO NOTHING;
    PERFORM 1 FROM {s}.streams WHERE stream_id = ANY (p_streams)
        ORDER BY stream_id FOR UPDATE;

    FOR i IN 1 .. n LOOP
        SELECT last_version, last_position INTO v_version, v_position
            FROM {s}.streams WHERE stream_id = p_streams[i];
        v_ok := CASE p_kinds[i]
            WHEN 0 THEN true
            WHEN 1 THEN v_version IS NULL
            WHEN 2 THEN v_version IS NOT NULL
            WHEN 3 THEN v_version IS NOT DISTINCT FROM p_values[i] AND v_version IS NOT NULL
            WHEN 4 THEN v_position IS NOT DISTINCT FROM p_values[i] AND v_position IS NOT NULL
            ELSE false
        END;
        IF NOT v_ok THEN
            v_failed := v_failed || jsonb_build_object(
                'stream', p_streams[i], 'version', v_version, 'position', v_position);
            v_message := v_message || CASE WHEN v_message = '' THEN '' ELSE '; ' END
                || 'stream ' || p_streams[i] || ': found '
                || CASE WHEN v_version IS NULL THEN 'no stream'
                        ELSE 'version ' || v_version || ' at position ' || v_position END;
        END IF;
        v_versions := v_versions || v_version;
        v_total := v_total + p_counts[i];
    END LOOP;

    IF v_failed <> '[]' THEN
        RAISE EXCEPTION USING ERRCODE = 'HS409',
            MESSAGE = 'wrong expected version: ' || v_message,
            DETAIL = v_failed::text;
    END IF;
    IF v_total = 0 THEN
        RETURN;
    END IF;

    UPDATE {s}.log_head
        SET next_position = next_position + v_total,
            last_created_at = greatest(clock_timestamp(), last_created_at)
        RETURNING next_position - v_total, last_created_at INTO v_next, v_created;

    FOR i IN 1 .. n LOOP
        CONTINUE WHEN p_counts[i] = 0;
        v_version := coalesce(v_versions[i], -1);
        INSERT INTO {s}.events (position, stream_id, version, event_id, correlation_id,
                                created_at, event_type, payload)
            SELECT v_next + k - 1, p_streams[i], v_version + k, gen_random_uuid(),
                   p_correlation, v_created, p_types[v_index + k], p_payloads[v_index + k]::jsonb
            FROM generate_series(1, p_counts[i]) AS k;
        v_next := v_next + p_counts[i];
        v_index := v_index + p_counts[i];
        UPDATE {s}.streams SET last_version = v_version + p_counts[i], last_position = v_next - 1
            WHERE stream_id = p_streams[i];
        out_stream := p_streams[i];
        out_version := v_version + p_counts[i];
        out_position := v_next - 1;
        RETURN NEXT;
    END LOOP;
    PERFORM pg_notify('{channel}', (v_next - 1)::text);
END
$fn$;
"#;

/// Byte payloads (migration 3): `payload_bytes BYTEA` beside `payload`,
/// exactly one of the two set on every row; migration 4
/// ([`INSERT_BYTES_FN`]) lets the insert write either. Constant time on
/// any table: adding a column without a default and dropping a `NOT
/// NULL` only change the catalog, and the `CHECK` is added `NOT VALID`
/// (no scan under the table lock) because every older row holds it by
/// construction (`payload` was `NOT NULL`, `payload_bytes` is new); it
/// binds every row written from here on.
const BYTE_PAYLOADS: &str = r#"
ALTER TABLE {s}.events
    ADD COLUMN payload_bytes BYTEA,
    ALTER COLUMN payload DROP NOT NULL,
    ADD CONSTRAINT events_one_payload
        CHECK ((payload IS NULL) <> (payload_bytes IS NULL)) NOT VALID;
"#;

/// The insert since migration 4: [`INSERT_FN`]'s steps unchanged, with
/// the payloads in one of two arrays, by the store's codec: `p_payloads`
/// (JSON text, cast to `JSONB`) or `p_bytes` (`BYTEA`). The store sends
/// the other one empty, so its subscripts read `NULL` and each row gets
/// exactly one payload (the `CHECK` of [`BYTE_PAYLOADS`] holds it to that).
const INSERT_BYTES_FN: &str = r#"
DROP FUNCTION {s}.insert_events(
    UUID[], SMALLINT[], BIGINT[], INT[], TEXT[], TEXT[], UUID);
CREATE FUNCTION {s}.insert_events(
    p_streams UUID[], p_kinds SMALLINT[], p_values BIGINT[], p_counts INT[],
    p_types TEXT[], p_payloads TEXT[], p_bytes BYTEA[], p_correlation UUID
) RETURNS TABLE (out_stream UUID, out_version BIGINT, out_position BIGINT)
LANGUAGE plpgsql SET lock_timeout = '10s' AS $fn$
DECLARE
    n INT := coalesce(array_length(p_streams, 1), 0);
    v_versions BIGINT[] := '{}';
    v_version BIGINT;
    v_position BIGINT;
    v_ok BOOLEAN;
    v_failed JSONB := '[]';
    v_message TEXT := '';
    v_total BIGINT := 0;
    v_next BIGINT;
    v_index INT := 0;
    v_created TIMESTAMPTZ;
BEGIN
    INSERT INTO {s}.streams (stream_id)
        SELECT id FROM unnest(p_streams) AS id ORDER BY id
        ON CONFLICT DO NOTHING;
    PERFORM 1 FROM {s}.streams WHERE stream_id = ANY (p_streams)
        ORDER BY stream_id FOR UPDATE;

    FOR i IN 1 .. n LOOP
        SELECT last_version, last_position INTO v_version, v_position
            FROM {s}.streams WHERE stream_id = p_streams[i];
        v_ok := CASE p_kinds[i]
            WHEN 0 THEN true
            WHEN 1 THEN v_version IS NULL
            WHEN 2 THEN v_version IS NOT NULL
            WHEN 3 THEN v_version IS NOT DISTINCT FROM p_values[i] AND v_version IS NOT NULL
            WHEN 4 THEN v_position IS NOT DISTINCT FROM p_values[i] AND v_position IS NOT NULL
            ELSE false
        END;
        IF NOT v_ok THEN
            v_failed := v_failed || jsonb_build_object(
                'stream', p_streams[i], 'version', v_version, 'position', v_position);
            v_message := v_message || CASE WHEN v_message = '' THEN '' ELSE '; ' END
                || 'stream ' || p_streams[i] || ': found '
                || CASE WHEN v_version IS NULL THEN 'no stream'
                        ELSE 'version ' || v_version || ' at position ' || v_position END;
        END IF;
        v_versions := v_versions || v_version;
        v_total := v_total + p_counts[i];
    END LOOP;

    IF v_failed <> '[]' THEN
        RAISE EXCEPTION USING ERRCODE = 'HS409',
            MESSAGE = 'wrong expected version: ' || v_message,
            DETAIL = v_failed::text;
    END IF;
    IF v_total = 0 THEN
        RETURN;
    END IF;

    UPDATE {s}.log_head
        SET next_position = next_position + v_total,
            last_created_at = greatest(clock_timestamp(), last_created_at)
        RETURNING next_position - v_total, last_created_at INTO v_next, v_created;

    FOR i IN 1 .. n LOOP
        CONTINUE WHEN p_counts[i] = 0;
        v_version := coalesce(v_versions[i], -1);
        INSERT INTO {s}.events (position, stream_id, version, event_id, correlation_id,
                                created_at, event_type, payload, payload_bytes)
            SELECT v_next + k - 1, p_streams[i], v_version + k, gen_random_uuid(),
                   p_correlation, v_created, p_types[v_index + k],
                   p_payloads[v_index + k]::jsonb, p_bytes[v_index + k]
            FROM generate_series(1, p_counts[i]) AS k;
        v_next := v_next + p_counts[i];
        v_index := v_index + p_counts[i];
        UPDATE {s}.streams SET last_version = v_version + p_counts[i], last_position = v_next - 1
            WHERE stream_id = p_streams[i];
        out_stream := p_streams[i];
        out_version := v_version + p_counts[i];
        out_position := v_next - 1;
        RETURN NEXT;
    END LOOP;
    PERFORM pg_notify('{channel}', (v_next - 1)::text);
END
$fn$;
"#;

/// Stream names (rule 32, migration 5): a stream's name and its category (computed by
/// `StreamName::category`, so the convention has one definition), set by
/// the insert that writes the stream's first events, in its transaction,
/// and never changed; `NULL` for a stream first written by id. Category
/// subscriptions select `stream_id IN (... WHERE category = $n)`.
const STREAM_NAMES: &str = r#"
ALTER TABLE {s}.streams ADD COLUMN name TEXT, ADD COLUMN category TEXT;
CREATE INDEX streams_category ON {s}.streams (category) WHERE category IS NOT NULL;
"#;

/// Maximum age (rule 30, KurrentDB's `$maxAge`): `streams.max_age`, in
/// microseconds (`hindsight::max_age_micros`: at least 1, at most
/// `MAX_AGE_LIMIT`'s), `NULL` for none. Constant time on any table (no
/// default). Read and page queries hide an event whose `created_at` is
/// older than `statement_timestamp()` minus it: the server's clock, which
/// stamped `created_at` (`clock_timestamp()` in `insert_events`), read
/// once per statement. No function is replaced: the filter lives in the
/// queries of [`Sql`], and `insert_events` does not look at the age.
const MAX_AGE: &str = r#"
ALTER TABLE {s}.streams ADD COLUMN max_age BIGINT CHECK (max_age > 0);
"#;

/// Stream lifecycle (rule 30: soft delete, hard delete, truncate before;
/// migration 6). Three columns on `streams`, constant time on any table
/// (constant defaults only change the catalog):
///
/// - `deleted_before`: the stream's length at its last delete; it exists
///   (for expectations, heads and names) only while `last_version >=
///   deleted_before`, and its next event continues the versions;
/// - `visible_from`: the first version readers see (raised by deletes and
///   truncations, never lowered); every read and subscription query skips
///   events below it;
/// - `tombstoned`: set by a hard delete; `insert_events` then refuses every
///   write to the stream;
/// - `max_count`: the most events readers see (KurrentDB's `$maxCount`),
///   `NULL` for no limit; `insert_events` raises `visible_from` after each
///   append to it, in the same transaction.
///
/// And `insert_events` again, [`INSERT_BYTES_FN`]'s steps with two
/// changes under the same row locks: an expectation is checked against the
/// head since the last delete, and a transaction that writes to or checks
/// (other than `Any`) a hard-deleted stream raises `HS410` naming the first
/// such stream in id order, before any conflict, writing nothing.
const STREAM_LIFECYCLE: &str = r#"
ALTER TABLE {s}.streams
    ADD COLUMN deleted_before BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN visible_from BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN tombstoned BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN max_count BIGINT CHECK (max_count >= 0);
CREATE OR REPLACE FUNCTION {s}.insert_events(
    p_streams UUID[], p_kinds SMALLINT[], p_values BIGINT[], p_counts INT[],
    p_types TEXT[], p_payloads TEXT[], p_bytes BYTEA[], p_correlation UUID
) RETURNS TABLE (out_stream UUID, out_version BIGINT, out_position BIGINT)
LANGUAGE plpgsql SET lock_timeout = '10s' AS $fn$
DECLARE
    n INT := coalesce(array_length(p_streams, 1), 0);
    v_versions BIGINT[] := '{}';
    v_last BIGINT;
    v_version BIGINT;
    v_position BIGINT;
    v_deleted_before BIGINT;
    v_tombstoned BOOLEAN;
    v_dead UUID;
    v_ok BOOLEAN;
    v_failed JSONB := '[]';
    v_message TEXT := '';
    v_total BIGINT := 0;
    v_next BIGINT;
    v_index INT := 0;
    v_created TIMESTAMPTZ;
BEGIN
    INSERT INTO {s}.streams (stream_id)
        SELECT id FROM unnest(p_streams) AS id ORDER BY id
        ON CONFLICT DO NOTHING;
    PERFORM 1 FROM {s}.streams WHERE stream_id = ANY (p_streams)
        ORDER BY stream_id FOR UPDATE;

    FOR i IN 1 .. n LOOP
        SELECT last_version, last_position, deleted_before, tombstoned
            INTO v_last, v_position, v_deleted_before, v_tombstoned
            FROM {s}.streams WHERE stream_id = p_streams[i];
        IF v_tombstoned AND v_dead IS NULL AND (p_kinds[i] <> 0 OR p_counts[i] > 0) THEN
            v_dead := p_streams[i];
        END IF;
        -- The head since the last delete: none if nothing was written since.
        IF v_last IS NULL OR v_last < v_deleted_before THEN
            v_version := NULL;
            v_position := NULL;
        ELSE
            v_version := v_last;
        END IF;
        v_ok := CASE p_kinds[i]
            WHEN 0 THEN true
            WHEN 1 THEN v_version IS NULL
            WHEN 2 THEN v_version IS NOT NULL
            WHEN 3 THEN v_version IS NOT DISTINCT FROM p_values[i] AND v_version IS NOT NULL
            WHEN 4 THEN v_position IS NOT DISTINCT FROM p_values[i] AND v_position IS NOT NULL
            ELSE false
        END;
        IF NOT v_ok THEN
            v_failed := v_failed || jsonb_build_object(
                'stream', p_streams[i], 'version', v_version, 'position', v_position);
            v_message := v_message || CASE WHEN v_message = '' THEN '' ELSE '; ' END
                || 'stream ' || p_streams[i] || ': found '
                || CASE WHEN v_version IS NULL THEN 'no stream'
                        ELSE 'version ' || v_version || ' at position ' || v_position END;
        END IF;
        -- Versions continue after a delete: the next one follows the last.
        v_versions := v_versions || v_last;
        v_total := v_total + p_counts[i];
    END LOOP;

    IF v_dead IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'HS410',
            MESSAGE = 'stream ' || v_dead || ' is hard-deleted',
            DETAIL = v_dead::text;
    END IF;
    IF v_failed <> '[]' THEN
        RAISE EXCEPTION USING ERRCODE = 'HS409',
            MESSAGE = 'wrong expected version: ' || v_message,
            DETAIL = v_failed::text;
    END IF;
    IF v_total = 0 THEN
        RETURN;
    END IF;

    UPDATE {s}.log_head
        SET next_position = next_position + v_total,
            last_created_at = greatest(clock_timestamp(), last_created_at)
        RETURNING next_position - v_total, last_created_at INTO v_next, v_created;

    FOR i IN 1 .. n LOOP
        CONTINUE WHEN p_counts[i] = 0;
        v_version := coalesce(v_versions[i], -1);
        INSERT INTO {s}.events (position, stream_id, version, event_id, correlation_id,
                                created_at, event_type, payload, payload_bytes)
            SELECT v_next + k - 1, p_streams[i], v_version + k, gen_random_uuid(),
                   p_correlation, v_created, p_types[v_index + k],
                   p_payloads[v_index + k]::jsonb, p_bytes[v_index + k]
            FROM generate_series(1, p_counts[i]) AS k;
        v_next := v_next + p_counts[i];
        v_index := v_index + p_counts[i];
        UPDATE {s}.streams SET last_version = v_version + p_counts[i], last_position = v_next - 1,
            visible_from = CASE WHEN max_count IS NULL THEN visible_from
                ELSE greatest(visible_from, v_version + p_counts[i] + 1 - max_count) END
            WHERE stream_id = p_streams[i];
        out_stream := p_streams[i];
        out_version := v_version + p_counts[i];
        out_position := v_next - 1;
        RETURN NEXT;
    END LOOP;
    PERFORM pg_notify('{channel}', (v_next - 1)::text);
END
$fn$;
"#;

/// Event metadata (rule 33, migration 7): a causation id and headers per
/// event, both `NULL` for an event without (adding nullable columns without
/// a default only changes the catalog: constant time on any table), and the
/// insert replaced by one that writes them: [`STREAM_LIFECYCLE`]'s steps
/// unchanged, with two more arrays indexed like the payloads,
/// `p_causations` and `p_headers` (JSON text of `[[key, value], ...]`,
/// cast to `JSONB`). The store sends both empty when no event of the
/// transaction has metadata, so their subscripts read `NULL` and such an
/// insert sends and stores nothing more than before.
const EVENT_METADATA: &str = r#"
ALTER TABLE {s}.events ADD COLUMN causation_id UUID, ADD COLUMN headers JSONB;
DROP FUNCTION {s}.insert_events(
    UUID[], SMALLINT[], BIGINT[], INT[], TEXT[], TEXT[], BYTEA[], UUID);
CREATE FUNCTION {s}.insert_events(
    p_streams UUID[], p_kinds SMALLINT[], p_values BIGINT[], p_counts INT[],
    p_types TEXT[], p_payloads TEXT[], p_bytes BYTEA[], p_correlation UUID,
    p_causations UUID[], p_headers TEXT[]
) RETURNS TABLE (out_stream UUID, out_version BIGINT, out_position BIGINT)
LANGUAGE plpgsql SET lock_timeout = '10s' AS $fn$
DECLARE
    n INT := coalesce(array_length(p_streams, 1), 0);
    v_versions BIGINT[] := '{}';
    v_last BIGINT;
    v_version BIGINT;
    v_position BIGINT;
    v_deleted_before BIGINT;
    v_tombstoned BOOLEAN;
    v_dead UUID;
    v_ok BOOLEAN;
    v_failed JSONB := '[]';
    v_message TEXT := '';
    v_total BIGINT := 0;
    v_next BIGINT;
    v_index INT := 0;
    v_created TIMESTAMPTZ;
BEGIN
    INSERT INTO {s}.streams (stream_id)
        SELECT id FROM unnest(p_streams) AS id ORDER BY id
        ON CONFLICT DO NOTHING;
    PERFORM 1 FROM {s}.streams WHERE stream_id = ANY (p_streams)
        ORDER BY stream_id FOR UPDATE;

    FOR i IN 1 .. n LOOP
        SELECT last_version, last_position, deleted_before, tombstoned
            INTO v_last, v_position, v_deleted_before, v_tombstoned
            FROM {s}.streams WHERE stream_id = p_streams[i];
        IF v_tombstoned AND v_dead IS NULL AND (p_kinds[i] <> 0 OR p_counts[i] > 0) THEN
            v_dead := p_streams[i];
        END IF;
        -- The head since the last delete: none if nothing was written since.
        IF v_last IS NULL OR v_last < v_deleted_before THEN
            v_version := NULL;
            v_position := NULL;
        ELSE
            v_version := v_last;
        END IF;
        v_ok := CASE p_kinds[i]
            WHEN 0 THEN true
            WHEN 1 THEN v_version IS NULL
            WHEN 2 THEN v_version IS NOT NULL
            WHEN 3 THEN v_version IS NOT DISTINCT FROM p_values[i] AND v_version IS NOT NULL
            WHEN 4 THEN v_position IS NOT DISTINCT FROM p_values[i] AND v_position IS NOT NULL
            ELSE false
        END;
        IF NOT v_ok THEN
            v_failed := v_failed || jsonb_build_object(
                'stream', p_streams[i], 'version', v_version, 'position', v_position);
            v_message := v_message || CASE WHEN v_message = '' THEN '' ELSE '; ' END
                || 'stream ' || p_streams[i] || ': found '
                || CASE WHEN v_version IS NULL THEN 'no stream'
                        ELSE 'version ' || v_version || ' at position ' || v_position END;
        END IF;
        -- Versions continue after a delete: the next one follows the last.
        v_versions := v_versions || v_last;
        v_total := v_total + p_counts[i];
    END LOOP;

    IF v_dead IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'HS410',
            MESSAGE = 'stream ' || v_dead || ' is hard-deleted',
            DETAIL = v_dead::text;
    END IF;
    IF v_failed <> '[]' THEN
        RAISE EXCEPTION USING ERRCODE = 'HS409',
            MESSAGE = 'wrong expected version: ' || v_message,
            DETAIL = v_failed::text;
    END IF;
    IF v_total = 0 THEN
        RETURN;
    END IF;

    UPDATE {s}.log_head
        SET next_position = next_position + v_total,
            last_created_at = greatest(clock_timestamp(), last_created_at)
        RETURNING next_position - v_total, last_created_at INTO v_next, v_created;

    FOR i IN 1 .. n LOOP
        CONTINUE WHEN p_counts[i] = 0;
        v_version := coalesce(v_versions[i], -1);
        INSERT INTO {s}.events (position, stream_id, version, event_id, correlation_id,
                                created_at, event_type, payload, payload_bytes,
                                causation_id, headers)
            SELECT v_next + k - 1, p_streams[i], v_version + k, gen_random_uuid(),
                   p_correlation, v_created, p_types[v_index + k],
                   p_payloads[v_index + k]::jsonb, p_bytes[v_index + k],
                   p_causations[v_index + k], p_headers[v_index + k]::jsonb
            FROM generate_series(1, p_counts[i]) AS k;
        v_next := v_next + p_counts[i];
        v_index := v_index + p_counts[i];
        UPDATE {s}.streams SET last_version = v_version + p_counts[i], last_position = v_next - 1,
            visible_from = CASE WHEN max_count IS NULL THEN visible_from
                ELSE greatest(visible_from, v_version + p_counts[i] + 1 - max_count) END
            WHERE stream_id = p_streams[i];
        out_stream := p_streams[i];
        out_version := v_version + p_counts[i];
        out_position := v_next - 1;
        RETURN NEXT;
    END LOOP;
    PERFORM pg_notify('{channel}', (v_next - 1)::text);
END
$fn$;
"#;

/// Idempotent appends by client-supplied event ids (rule 29). Replaces
/// the `insert_events` of [`EVENT_METADATA`] (dropped, and created again
/// with one more array, `p_ids`, indexed like the payloads: `NULL` for an
/// event without an id of its own; the store sends it empty when no event
/// has one, so such an insert sends and stores nothing more than before).
///
/// - `events.event_id` is no longer unique across the log: a client may
///   use one id in two streams (rule 29 does not check across streams).
///   Store-made ids stay `gen_random_uuid()`.
/// - `client_id`: whether `event_id` was given by the client;
///   `tx_first`, `tx_len`: the range of the event's transaction, set on
///   every event of a transaction with a client id (`NULL` otherwise),
///   to tell a whole retry from a partial one and to answer a retry with
///   its original heads.
/// - A partial index on `(stream_id, event_id) WHERE client_id` finds a
///   re-sent id anywhere in its stream: PostgreSQL's window for `Any` and
///   `StreamExists` is the whole stream.
/// - The check runs after the row locks and the expectations are read,
///   before any position is taken: `event_id_conflict` raises
///   [`ID_CONFLICT_SQLSTATE`]; a whole retry returns the original
///   transaction's heads and writes nothing. Payloads are compared as
///   stored (`JSONB` equality, or the bytes), and metadata.
const IDEMPOTENT_APPENDS: &str = r#"
ALTER TABLE {s}.events DROP CONSTRAINT IF EXISTS events_event_id_key;
ALTER TABLE {s}.events
    ADD COLUMN client_id BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN tx_first BIGINT,
    ADD COLUMN tx_len INT;
CREATE INDEX events_client_ids ON {s}.events (stream_id, event_id) WHERE client_id;
CREATE FUNCTION {s}.event_id_conflict(
    p_stream UUID, p_id UUID, p_mismatch TEXT, p_version BIGINT, p_expected BIGINT
) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'HS412',
        MESSAGE = 'event id ' || p_id || ' conflicts on stream ' || p_stream || ': ' || p_mismatch,
        DETAIL = jsonb_build_object('stream', p_stream, 'event_id', p_id,
            'mismatch', p_mismatch, 'version', p_version, 'expected', p_expected)::text;
END
$fn$;
DROP FUNCTION {s}.insert_events(
    UUID[], SMALLINT[], BIGINT[], INT[], TEXT[], TEXT[], BYTEA[], UUID, UUID[], TEXT[]);
CREATE FUNCTION {s}.insert_events(
    p_streams UUID[], p_kinds SMALLINT[], p_values BIGINT[], p_counts INT[],
    p_types TEXT[], p_payloads TEXT[], p_bytes BYTEA[], p_correlation UUID,
    p_causations UUID[], p_headers TEXT[], p_ids UUID[]
) RETURNS TABLE (out_stream UUID, out_version BIGINT, out_position BIGINT)
LANGUAGE plpgsql SET lock_timeout = '10s' AS $fn$
DECLARE
    n INT := coalesce(array_length(p_streams, 1), 0);
    v_versions BIGINT[] := '{}';
    v_last BIGINT;
    v_version BIGINT;
    v_position BIGINT;
    v_deleted_before BIGINT;
    v_tombstoned BOOLEAN;
    v_dead UUID;
    v_ok BOOLEAN;
    v_failed JSONB := '[]';
    v_message TEXT := '';
    v_total BIGINT := 0;
    v_next BIGINT;
    v_index INT := 0;
    v_created TIMESTAMPTZ;
    -- Rule 29.
    v_with_ids BOOLEAN := coalesce(array_length(p_ids, 1), 0) > 0;
    v_bases BIGINT[] := '{}';
    v_failed_pure JSONB := '[]';
    v_message_pure TEXT := '';
    v_s INT := 0;
    v_first_id UUID;
    v_skip INT;
    v_place BIGINT;
    v_anchor BIGINT;
    v_found BIGINT;
    v_id UUID;
    v_row RECORD;
    v_tx_first BIGINT;
    v_tx_len INT;
    v_retry_first BIGINT;
    v_retry_len INT;
    v_retried BIGINT := 0;
    v_retry_stream UUID;
    v_retry_id UUID;
    v_fresh BOOLEAN := false;
    v_fresh_stream UUID;
    v_fresh_id UUID;
    v_first_position BIGINT;
BEGIN
    INSERT INTO {s}.streams (stream_id)
        SELECT id FROM unnest(p_streams) AS id ORDER BY id
        ON CONFLICT DO NOTHING;
    PERFORM 1 FROM {s}.streams WHERE stream_id = ANY (p_streams)
        ORDER BY stream_id FOR UPDATE;

    FOR i IN 1 .. n LOOP
        SELECT last_version, last_position, deleted_before, tombstoned
            INTO v_last, v_position, v_deleted_before, v_tombstoned
            FROM {s}.streams WHERE stream_id = p_streams[i];
        IF v_tombstoned AND v_dead IS NULL AND (p_kinds[i] <> 0 OR p_counts[i] > 0) THEN
            v_dead := p_streams[i];
        END IF;
        -- The head since the last delete: none if nothing was written since.
        IF v_last IS NULL OR v_last < v_deleted_before THEN
            v_version := NULL;
            v_position := NULL;
        ELSE
            v_version := v_last;
        END IF;
        v_ok := CASE p_kinds[i]
            WHEN 0 THEN true
            WHEN 1 THEN v_version IS NULL
            WHEN 2 THEN v_version IS NOT NULL
            WHEN 3 THEN v_version IS NOT DISTINCT FROM p_values[i] AND v_version IS NOT NULL
            WHEN 4 THEN v_position IS NOT DISTINCT FROM p_values[i] AND v_position IS NOT NULL
            ELSE false
        END;
        IF NOT v_ok THEN
            v_failed := v_failed || jsonb_build_object(
                'stream', p_streams[i], 'version', v_version, 'position', v_position);
            v_message := v_message || CASE WHEN v_message = '' THEN '' ELSE '; ' END
                || 'stream ' || p_streams[i] || ': found '
                || CASE WHEN v_version IS NULL THEN 'no stream'
                        ELSE 'version ' || v_version || ' at position ' || v_position END;
            IF p_counts[i] = 0 THEN
                v_failed_pure := v_failed_pure || jsonb_build_object(
                    'stream', p_streams[i], 'version', v_version, 'position', v_position);
                v_message_pure := v_message_pure || 'stream ' || p_streams[i] || '; ';
            END IF;
        END IF;
        v_bases := v_bases || v_deleted_before;
        -- Versions continue after a delete: the next one follows the last.
        v_versions := v_versions || v_last;
        v_total := v_total + p_counts[i];
    END LOOP;

    IF v_dead IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'HS410',
            MESSAGE = 'stream ' || v_dead || ' is hard-deleted',
            DETAIL = v_dead::text;
    END IF;
    -- Rule 29: which writes with client ids re-send stored events.
    IF v_with_ids THEN
        v_s := 0;
        FOR i IN 1 .. n LOOP
            CONTINUE WHEN p_counts[i] = 0;
            v_s := v_s + p_counts[i];
            IF NOT EXISTS (
                SELECT 1 FROM unnest(p_ids[v_s - p_counts[i] + 1 : v_s]) AS x WHERE x IS NOT NULL)
            THEN
                -- No ids: never a retry.
                v_fresh := true;
                CONTINUE;
            END IF;
            -- The write's first event with an id, `v_skip` events in.
            SELECT x.id, x.k - 1 INTO v_first_id, v_skip
                FROM unnest(p_ids[v_s - p_counts[i] + 1 : v_s]) WITH ORDINALITY AS x(id, k)
                WHERE x.id IS NOT NULL ORDER BY x.k LIMIT 1;
            v_place := CASE p_kinds[i]
                WHEN 3 THEN p_values[i] + 1
                WHEN 4 THEN (SELECT version + 1 FROM {s}.events
                             WHERE stream_id = p_streams[i] AND position = p_values[i])
                WHEN 1 THEN v_bases[i]
                ELSE NULL END;
            v_anchor := NULL;
            IF v_place IS NOT NULL THEN
                SELECT version - v_skip INTO v_anchor FROM {s}.events
                    WHERE stream_id = p_streams[i] AND version = v_place + v_skip
                      AND client_id AND event_id = v_first_id;
            END IF;
            IF v_anchor IS NULL THEN
                SELECT max(version) - v_skip INTO v_anchor FROM {s}.events
                    WHERE stream_id = p_streams[i] AND client_id AND event_id = v_first_id;
                IF v_anchor < 0 THEN
                    v_anchor := NULL;
                END IF;
            END IF;
            IF v_anchor IS NULL THEN
                v_id := NULL;
                SELECT x.id, e.version, x.k - 1 INTO v_id, v_found, v_skip
                    FROM unnest(p_ids[v_s - p_counts[i] + 1 : v_s]) WITH ORDINALITY AS x(id, k)
                    JOIN {s}.events e ON e.stream_id = p_streams[i] AND e.client_id
                                      AND e.event_id = x.id
                    ORDER BY x.k, e.version DESC LIMIT 1;
                IF v_id IS NOT NULL THEN
                    PERFORM {s}.event_id_conflict(p_streams[i], v_id, 'other_version',
                                                  v_found, v_place + v_skip);
                END IF;
                v_fresh := true;
                IF v_fresh_id IS NULL THEN
                    v_fresh_stream := p_streams[i];
                    SELECT x INTO v_fresh_id FROM unnest(p_ids[v_s - p_counts[i] + 1 : v_s]) AS x
                        WHERE x IS NOT NULL LIMIT 1;
                END IF;
                CONTINUE;
            END IF;
            IF v_place IS NOT NULL AND v_anchor <> v_place THEN
                PERFORM {s}.event_id_conflict(p_streams[i], v_first_id, 'other_version',
                                              v_anchor + v_skip, v_place + v_skip);
            END IF;
            IF v_anchor + p_counts[i] - 1 > v_versions[i] THEN
                PERFORM {s}.event_id_conflict(p_streams[i], v_first_id, 'partial', NULL, NULL);
            END IF;
            v_tx_first := NULL;
            FOR v_row IN
                SELECT k, e.event_id, e.client_id, e.payload, e.payload_bytes, e.causation_id,
                       e.headers, e.tx_first, e.tx_len, e.version
                FROM generate_series(1, p_counts[i]) AS k
                JOIN {s}.events e ON e.stream_id = p_streams[i] AND e.version = v_anchor + k - 1
                ORDER BY k
            LOOP
                v_index := v_s - p_counts[i] + v_row.k;
                v_id := coalesce(p_ids[v_index], v_first_id);
                IF (CASE WHEN v_row.client_id THEN v_row.event_id END)
                        IS DISTINCT FROM p_ids[v_index] THEN
                    PERFORM {s}.event_id_conflict(p_streams[i], v_id, 'other_id', v_row.version, NULL);
                END IF;
                IF v_row.payload IS DISTINCT FROM p_payloads[v_index]::jsonb
                        OR v_row.payload_bytes IS DISTINCT FROM p_bytes[v_index] THEN
                    PERFORM {s}.event_id_conflict(p_streams[i], v_id, 'other_payload',
                                                  v_row.version, NULL);
                END IF;
                IF v_row.causation_id IS DISTINCT FROM p_causations[v_index]
                        OR v_row.headers IS DISTINCT FROM p_headers[v_index]::jsonb THEN
                    PERFORM {s}.event_id_conflict(p_streams[i], v_id, 'other_metadata',
                                                  v_row.version, NULL);
                END IF;
                IF v_row.tx_first IS NULL OR v_row.tx_first <> coalesce(v_tx_first, v_row.tx_first) THEN
                    PERFORM {s}.event_id_conflict(p_streams[i], v_id, 'part_of_transaction',
                                                  NULL, NULL);
                END IF;
                v_tx_first := v_row.tx_first;
                v_tx_len := v_row.tx_len;
            END LOOP;
            IF v_retry_first IS NULL THEN
                v_retry_first := v_tx_first;
                v_retry_len := v_tx_len;
                v_retried := p_counts[i];
                v_retry_stream := p_streams[i];
                v_retry_id := v_first_id;
            ELSIF v_retry_first <> v_tx_first THEN
                PERFORM {s}.event_id_conflict(p_streams[i], v_first_id, 'part_of_transaction',
                                              NULL, NULL);
            ELSE
                v_retried := v_retried + p_counts[i];
            END IF;
        END LOOP;
        v_index := 0;
        IF v_retry_first IS NOT NULL THEN
            IF v_fresh OR v_retried <> v_retry_len THEN
                IF v_fresh_id IS NOT NULL THEN
                    PERFORM {s}.event_id_conflict(v_fresh_stream, v_fresh_id,
                                                  'part_of_transaction', NULL, NULL);
                END IF;
                PERFORM {s}.event_id_conflict(v_retry_stream, v_retry_id,
                                              'part_of_transaction', NULL, NULL);
            END IF;
            -- A whole retry: its own expectations failed, as they should;
            -- its pure checks are still checked.
            IF v_failed_pure <> '[]' THEN
                RAISE EXCEPTION USING ERRCODE = 'HS409',
                    MESSAGE = 'wrong expected version: ' || v_message_pure,
                    DETAIL = v_failed_pure::text;
            END IF;
            RETURN QUERY SELECT e.stream_id, max(e.version), max(e.position)
                FROM {s}.events e
                WHERE e.position >= v_retry_first AND e.position < v_retry_first + v_retry_len
                GROUP BY e.stream_id;
            RETURN;
        END IF;
    END IF;
    IF v_failed <> '[]' THEN
        RAISE EXCEPTION USING ERRCODE = 'HS409',
            MESSAGE = 'wrong expected version: ' || v_message,
            DETAIL = v_failed::text;
    END IF;
    IF v_total = 0 THEN
        RETURN;
    END IF;

    UPDATE {s}.log_head
        SET next_position = next_position + v_total,
            last_created_at = greatest(clock_timestamp(), last_created_at)
        RETURNING next_position - v_total, last_created_at INTO v_next, v_created;
    v_first_position := v_next;

    FOR i IN 1 .. n LOOP
        CONTINUE WHEN p_counts[i] = 0;
        v_version := coalesce(v_versions[i], -1);
        INSERT INTO {s}.events (position, stream_id, version, event_id, correlation_id,
                                created_at, event_type, payload, payload_bytes,
                                causation_id, headers, client_id, tx_first, tx_len)
            SELECT v_next + k - 1, p_streams[i], v_version + k,
                   coalesce(p_ids[v_index + k], gen_random_uuid()),
                   p_correlation, v_created, p_types[v_index + k],
                   p_payloads[v_index + k]::jsonb, p_bytes[v_index + k],
                   p_causations[v_index + k], p_headers[v_index + k]::jsonb,
                   p_ids[v_index + k] IS NOT NULL,
                   CASE WHEN v_with_ids THEN v_first_position END,
                   CASE WHEN v_with_ids THEN v_total END
            FROM generate_series(1, p_counts[i]) AS k;
        v_next := v_next + p_counts[i];
        v_index := v_index + p_counts[i];
        UPDATE {s}.streams SET last_version = v_version + p_counts[i], last_position = v_next - 1,
            visible_from = CASE WHEN max_count IS NULL THEN visible_from
                ELSE greatest(visible_from, v_version + p_counts[i] + 1 - max_count) END
            WHERE stream_id = p_streams[i];
        out_stream := p_streams[i];
        out_version := v_version + p_counts[i];
        out_position := v_next - 1;
        RETURN NEXT;
    END LOOP;
    PERFORM pg_notify('{channel}', (v_next - 1)::text);
END
$fn$;
"#;

/// The columns every event read selects, in [`crate::row`]'s order.
const EVENT_COLUMNS: &str = "e.position, e.stream_id, e.version, e.event_id, e.correlation_id, \
     (extract(epoch FROM e.created_at) * 1000000)::BIGINT AS created_us, e.payload::text AS payload, \
     e.payload_bytes, e.causation_id, e.headers::text AS headers";

/// `schema` quoted (`"name"`), if it is a plain identifier: 1 to 48 of
/// `[a-z0-9_]`, not starting with a digit.
pub(crate) fn quote_schema(schema: &str) -> Result<String, PgError> {
    let valid = (1..=48).contains(&schema.len())
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if !valid {
        return Err(PgError::InvalidSchema(schema.to_owned()));
    }
    Ok(format!("\"{schema}\""))
}

/// The advisory lock key under which a schema is created and migrated: one
/// per schema, shared by the store's and the projections' migrations, so
/// two of them never race on `CREATE SCHEMA IF NOT EXISTS`.
pub(crate) fn migration_lock_key(quoted: &str) -> String {
    format!("hindsight-postgres:{quoted}")
}

/// The SQL of one store, built once at connect.
#[derive(Debug)]
pub(crate) struct Sql {
    /// The schema name as given.
    pub(crate) name: String,
    /// The quoted schema name.
    pub(crate) quoted: String,
    /// The notification channel: `hindsight_<schema>`.
    pub(crate) channel: String,
    pub(crate) insert: String,
    pub(crate) head: String,
    pub(crate) stream_head: String,
    /// `$1` stream.
    pub(crate) stream_name: String,
    /// `$1` streams, `$2` names, `$3` categories: names streams that have
    /// none yet (run in the insert's transaction, after `insert_events`
    /// locked the rows).
    pub(crate) name_streams: String,
    /// `$1` streams: the names of those that have one.
    pub(crate) stream_names: String,
    /// `$1` stream: its row, locked (`FOR UPDATE`), for a delete or a
    /// truncation: last version and position, `deleted_before`,
    /// `tombstoned`, name.
    pub(crate) lock_stream: String,
    /// `$1` stream: a placeholder row if it has none (a hard delete of a
    /// missing stream).
    pub(crate) placeholder: String,
    /// `$1` stream, `$2` whether for good: deletes what is written so far.
    pub(crate) delete: String,
    /// `$1` stream, `$2` the new floor: raises `visible_from` unless the
    /// stream is hard-deleted or was never written; returns `tombstoned`
    /// and the name.
    pub(crate) truncate: String,
    /// `$1` stream, `$2` the maximum count (`NULL`: none): sets it (a
    /// placeholder row for a stream not written yet) and raises
    /// `visible_from`, unless the stream is hard-deleted; returns
    /// `tombstoned` and the name.
    pub(crate) max_count: String,
    /// `$1` stream, `$2` the maximum age in microseconds (`NULL`: none):
    /// sets it (a placeholder row for a stream not written yet) unless the
    /// stream is hard-deleted; returns `tombstoned` and the name.
    pub(crate) max_age: String,
    /// Every stream row, locked in id order (as `insert_events` locks), for
    /// a store-wide delete.
    pub(crate) lock_all: String,
    /// Deletes every stream written since its last delete (not the
    /// hard-deleted ones), in the transaction of `lock_all`.
    pub(crate) delete_all: String,
    /// `$1` first position, `$2` end (exclusive), `$3` limit.
    pub(crate) read_all: String,
    /// `$1` stream, `$2` first version, `$3` end position (exclusive), `$4` limit.
    pub(crate) read_stream: String,
}

/// The filter every read and page query applies for the maximum age (rule
/// 30), on `e` (the event) joined to `st` (its stream's row): no age, or
/// created within it of the statement's start, by the server's clock.
const YOUNG_ENOUGH: &str = "(st.max_age IS NULL \
    OR e.created_at >= statement_timestamp() - st.max_age * interval '1 microsecond')";

impl Sql {
    /// The SQL of the store in `schema`, which must be a plain identifier.
    pub(crate) fn new(schema: &str) -> Result<Self, PgError> {
        let s = quote_schema(schema)?;
        Ok(Sql {
            insert: format!(
                "SELECT out_stream, out_version, out_position FROM {s}.insert_events(\
                 $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            head: format!("SELECT next_position FROM {s}.log_head"),
            stream_head: format!(
                "SELECT last_version, last_position FROM {s}.streams \
                 WHERE stream_id = $1 AND last_version >= deleted_before"
            ),
            stream_name: format!(
                "SELECT name FROM {s}.streams WHERE stream_id = $1 AND last_version >= deleted_before"
            ),
            lock_stream: format!(
                "SELECT last_version, last_position, deleted_before, tombstoned, name \
                 FROM {s}.streams WHERE stream_id = $1 FOR UPDATE"
            ),
            placeholder: format!(
                "INSERT INTO {s}.streams (stream_id) VALUES ($1) ON CONFLICT DO NOTHING"
            ),
            delete: format!(
                "UPDATE {s}.streams SET deleted_before = coalesce(last_version + 1, 0), \
                 visible_from = greatest(visible_from, coalesce(last_version + 1, 0)), \
                 tombstoned = tombstoned OR $2 WHERE stream_id = $1"
            ),
            truncate: format!(
                "UPDATE {s}.streams SET visible_from = CASE \
                 WHEN tombstoned OR last_version IS NULL THEN visible_from \
                 ELSE greatest(visible_from, $2) END \
                 WHERE stream_id = $1 RETURNING tombstoned, name"
            ),
            name_streams: format!(
                "UPDATE {s}.streams s SET name = n.name, category = n.category \
                 FROM unnest($1::UUID[], $2::TEXT[], $3::TEXT[]) AS n(id, name, category) \
                 WHERE s.stream_id = n.id AND s.name IS NULL"
            ),
            stream_names: format!(
                "SELECT stream_id, name FROM {s}.streams \
                 WHERE stream_id = ANY ($1) AND name IS NOT NULL"
            ),
            max_count: format!(
                "INSERT INTO {s}.streams AS st (stream_id, max_count) VALUES ($1, $2) \
                 ON CONFLICT (stream_id) DO UPDATE SET \
                 max_count = CASE WHEN st.tombstoned THEN st.max_count ELSE $2 END, \
                 visible_from = CASE \
                 WHEN st.tombstoned OR $2 IS NULL OR st.last_version IS NULL THEN st.visible_from \
                 ELSE greatest(st.visible_from, st.last_version + 1 - $2) END \
                 RETURNING tombstoned, name"
            ),
            max_age: format!(
                "INSERT INTO {s}.streams AS st (stream_id, max_age) VALUES ($1, $2) \
                 ON CONFLICT (stream_id) DO UPDATE SET \
                 max_age = CASE WHEN st.tombstoned THEN st.max_age ELSE $2 END \
                 RETURNING tombstoned, name"
            ),
            lock_all: format!(
                "SELECT 1 FROM {s}.streams ORDER BY stream_id FOR UPDATE"
            ),
            delete_all: format!(
                "UPDATE {s}.streams SET deleted_before = last_version + 1, \
                 visible_from = greatest(visible_from, last_version + 1) \
                 WHERE NOT tombstoned AND last_version >= deleted_before"
            ),
            read_all: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events e \
                 JOIN {s}.streams st ON st.stream_id = e.stream_id \
                 WHERE e.position >= $1 AND e.position < $2 AND e.version >= st.visible_from \
                 AND {YOUNG_ENOUGH} ORDER BY e.position LIMIT $3"
            ),
            read_stream: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events e \
                 JOIN {s}.streams st ON st.stream_id = e.stream_id \
                 WHERE e.stream_id = $1 AND e.position < $3 \
                 AND e.version >= greatest($2, st.visible_from) AND {YOUNG_ENOUGH} ORDER BY e.version LIMIT $4"
            ),
            channel: format!("hindsight_{schema}"),
            name: schema.to_owned(),
            quoted: s,
        })
    }

    /// One page of a subscription, from one snapshot: the head
    /// (`next_position`) and up to `$2` selected events from position `$1`
    /// below the head and below position `$3` (the page's window). Then,
    /// each only when selected and in this order, the stream (`$4`), the
    /// type names, the category.
    ///
    /// Two things keep every page's cost bounded whatever the planner's
    /// statistics say (a fresh schema has none until autovacuum analyzes
    /// it): the head comes from a `LIMIT 1` subquery, so the join is
    /// estimated at one row (joined to `log_head` itself, never analyzed,
    /// the page was estimated at 905,000 rows and JIT-compiled on every
    /// query: 8-9 ms of a 9 ms page); and the window caps the positions
    /// a page may scan (without statistics the planner sorted every event
    /// from `$1` to the head, so catching up was quadratic).
    pub(crate) fn subscription_page(
        &self,
        one_stream: bool,
        by_type: bool,
        by_category: bool,
    ) -> String {
        let s = &self.quoted;
        let mut next = 4;
        let mut parameter = |selected: bool| {
            selected.then(|| {
                next += 1;
                next - 1
            })
        };
        let stream = parameter(one_stream)
            .map(|n| format!(" AND e.stream_id = ${n}"))
            .unwrap_or_default();
        let types = parameter(by_type)
            .map(|n| format!(" AND e.event_type = ANY (${n})"))
            .unwrap_or_default();
        let category = parameter(by_category)
            .map(|n| {
                format!(
                    " AND e.stream_id IN (SELECT stream_id FROM {s}.streams WHERE category = ${n})"
                )
            })
            .unwrap_or_default();
        format!(
            "SELECT h.next_position AS head_next, page.* \
             FROM (SELECT next_position FROM {s}.log_head LIMIT 1) h \
             LEFT JOIN LATERAL (SELECT {EVENT_COLUMNS} FROM {s}.events e \
             JOIN {s}.streams st ON st.stream_id = e.stream_id \
             WHERE e.position >= $1 AND e.position < h.next_position AND e.position < $3 \
             AND e.version >= st.visible_from AND {YOUNG_ENOUGH}{stream}{types}{category} \
             ORDER BY e.position LIMIT $2) page ON true ORDER BY page.position"
        )
    }

    /// Creates the schema and brings it to the latest migration; idempotent,
    /// and safe when several processes connect at once (an advisory lock
    /// per schema).
    pub(crate) async fn migrate(&self, pool: &sqlx::PgPool) -> Result<(), PgError> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(migration_lock_key(&self.quoted))
            .execute(&mut *tx)
            .await?;
        let s = &self.quoted;
        sqlx::raw_sql(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; \
             CREATE TABLE IF NOT EXISTS {s}.migrations (version INT PRIMARY KEY, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ))
        .execute(&mut *tx)
        .await?;
        let applied: Vec<i32> = sqlx::query_scalar(&format!("SELECT version FROM {s}.migrations"))
            .fetch_all(&mut *tx)
            .await?;
        for (version, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let sql = sql.replace("{s}", s).replace("{channel}", &self.channel);
            sqlx::raw_sql(&sql).execute(&mut *tx).await?;
            sqlx::query(&format!("INSERT INTO {s}.migrations (version) VALUES ($1)"))
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
