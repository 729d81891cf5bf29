//! The page queries' plans, whatever the statistics: each all-streams page
//! scans one window of positions, and no page is JIT-compiled. Both
//! regressions cost time, not correctness (without statistics, a catch-up
//! read sorted every event up to the head on every page; with the events
//! analyzed but not the one-row `log_head`, every page was estimated at
//! 905,000 rows and spent 8-9 ms compiling itself), so the tests check the
//! plans PostgreSQL reports (`EXPLAIN ANALYZE`), not a duration.
//!
//! They need a server: `DATABASE_URL` (as the integration tests; skipped
//! without it unless `CI` is set).

use crate::schema::Sql;
use crate::store::{window_end, PAGE};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};

/// Events written: enough for costs that pass `jit_above_cost` (100,000)
/// when the planner multiplies them by a misestimated head.
const EVENTS: i64 = 100_000;

/// The planner's two states that went wrong: a fresh schema (no statistics
/// at all), and one whose events and streams autovacuum analyzed while `log_head`,
/// one row, was not.
const STATES: [Statistics; 2] = [Statistics::None, Statistics::EventsOnly];

#[derive(Clone, Copy, Debug)]
enum Statistics {
    None,
    EventsOnly,
}

/// A schema with `EVENTS` events in 7 streams (stream `k` holds the
/// positions equal to `k` modulo 7) and the given statistics, its SQL and
/// pool; `None` without a server (outside CI).
async fn schema(statistics: Statistics) -> Option<(Sql, PgPool)> {
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var_os("CI").is_none_or(|ci| ci.is_empty()),
                "DATABASE_URL is not set, but CI is: the PostgreSQL tests must run in CI"
            );
            return None;
        }
    };
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect");
    let schema = format!("hs_plan_{}", hindsight::Uuid::new_v4().simple());
    let sql = Sql::new(&schema).expect("a plain schema name");
    sql.migrate(&pool).await.expect("migrate");
    let s = &sql.quoted;
    // Autovacuum off for the tables: no statistics appear while the test
    // runs, whenever the daemon wakes. Never analyzed, `log_head` (one row)
    // is guessed at 1,810 rows.
    let analyze = match statistics {
        Statistics::None => String::new(),
        Statistics::EventsOnly => format!("ANALYZE {s}.events; ANALYZE {s}.streams;"),
    };
    pool.execute(sqlx::raw_sql(&format!(
        "ALTER TABLE {s}.events SET (autovacuum_enabled = false); \
         ALTER TABLE {s}.streams SET (autovacuum_enabled = false); \
         ALTER TABLE {s}.log_head SET (autovacuum_enabled = false); \
         INSERT INTO {s}.events (position, stream_id, version, event_id, created_at, event_type, payload) \
         SELECT g, md5((g % 7)::text)::uuid, g / 7, md5(g::text)::uuid, now(), 'Ev', jsonb_build_object('n', g) \
         FROM generate_series(0, {last}) g; \
         INSERT INTO {s}.streams (stream_id, last_version, last_position) \
         SELECT md5(k::text)::uuid, ({last} - k) / 7, {last} - ({last} - k) % 7 \
         FROM generate_series(0, 6) k; \
         UPDATE {s}.log_head SET next_position = {EVENTS}; {analyze}",
        last = EVENTS - 1,
    )))
    .await
    .expect("write the events");
    Some((sql, pool))
}

/// Drops the schema of a passing test.
async fn drop(sql: Sql, pool: PgPool) {
    pool.execute(sqlx::raw_sql(&format!(
        "DROP SCHEMA {} CASCADE",
        sql.quoted
    )))
    .await
    .expect("drop the schema");
}

/// The rows a node of `EXPLAIN ANALYZE`'s output produced, if the line is
/// a node: "... (actual time=0.1..0.7 rows=500 loops=1)".
fn actual_rows(line: &str) -> Option<u64> {
    let actual = line.split("(actual ").nth(1)?;
    let rows = actual.split("rows=").nth(1)?.split(' ').next()?;
    Some(rows.parse().unwrap_or_else(|_| panic!("rows of {line}")))
}

/// `EXPLAIN ANALYZE` of a query: one line a row.
async fn plan(
    pool: &PgPool,
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Vec<String> {
    use sqlx::Row;
    query
        .fetch_all(pool)
        .await
        .expect("explain")
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect()
}

/// Checks one page's plan: the page has `page` rows, no node produced
/// more than `most` (`None`: no bound), and it was not JIT-compiled.
fn check(lines: &[String], page: u64, most: Option<u64>, what: &str) {
    let plan = lines.join("\n");
    assert_eq!(actual_rows(&lines[0]), Some(page), "{what}:\n{plan}");
    if let Some(most) = most {
        let produced = lines.iter().filter_map(|line| actual_rows(line)).max();
        assert!(
            produced <= Some(most),
            "{what}: a node produced {produced:?} rows, the window holds {most}:\n{plan}"
        );
    }
    let jit = lines
        .iter()
        .any(|line| line.trim_start().starts_with("JIT:"));
    assert!(!jit, "{what} was JIT-compiled:\n{plan}");
}

#[tokio::test]
async fn a_read_all_page_scans_one_window_and_is_not_jit_compiled() {
    for statistics in STATES {
        let Some((sql, pool)) = schema(statistics).await else {
            return;
        };
        let explain = format!("EXPLAIN ANALYZE {}", sql.read_all);
        for first in [0, PAGE, 2 * PAGE] {
            // As `read_all` pages: from `first` to the window's end or the head.
            let end = EVENTS.min(window_end(first));
            let query = sqlx::query(&explain).bind(first).bind(end).bind(PAGE);
            let lines = plan(&pool, query).await;
            let what = format!("the page at {first}, statistics {statistics:?}");
            check(&lines, PAGE as u64, Some(PAGE as u64), &what);
        }
        drop(sql, pool).await;
    }
}

#[tokio::test]
async fn an_all_streams_subscription_page_scans_one_window_and_is_not_jit_compiled() {
    for statistics in STATES {
        let Some((sql, pool)) = schema(statistics).await else {
            return;
        };
        // Unfiltered, and by type (a filter that selects every event).
        for by_type in [false, true] {
            let explain = format!(
                "EXPLAIN ANALYZE {}",
                sql.subscription_page(false, by_type, false)
            );
            for first in [0, PAGE, 2 * PAGE] {
                let mut query = sqlx::query(&explain)
                    .bind(first)
                    .bind(PAGE)
                    .bind(window_end(first));
                if by_type {
                    query = query.bind(vec!["Ev".to_owned()]);
                }
                let lines = plan(&pool, query).await;
                let what =
                    format!("the page at {first} (by type: {by_type}), statistics {statistics:?}");
                check(&lines, PAGE as u64, Some(PAGE as u64), &what);
            }
        }
        drop(sql, pool).await;
    }
}

#[tokio::test]
async fn a_one_stream_subscription_page_is_not_jit_compiled() {
    for statistics in STATES {
        let Some((sql, pool)) = schema(statistics).await else {
            return;
        };
        let explain = format!(
            "EXPLAIN ANALYZE {}",
            sql.subscription_page(true, false, false)
        );
        // As a one-stream subscription pages: no window. Stream 0 (md5 of
        // "0"): every seventh event, a full page of them.
        let stream = hindsight::Uuid::parse_str("cfcd2084-95d5-65ef-66e7-dff9f98764da").unwrap();
        let query = sqlx::query(&explain)
            .bind(0i64)
            .bind(PAGE)
            .bind(i64::MAX)
            .bind(stream);
        let lines = plan(&pool, query).await;
        let page = (EVENTS as u64).div_ceil(7).min(PAGE as u64);
        check(
            &lines,
            page,
            None,
            &format!("the page, statistics {statistics:?}"),
        );
        drop(sql, pool).await;
    }
}

/// With a maximum age on every stream (one hour: nothing hidden), an
/// all-streams read or subscription page still scans one window; none of
/// them, and no stream read's page (`Sql::read_stream`, which joins the
/// stream's row for `visible_from` and the age), is JIT-compiled.
///
/// A stream page has no row bound here, as a one-stream subscription's
/// page has none: without statistics PostgreSQL reads and sorts the
/// stream's rows (14,286 here) before the `LIMIT`, with this query and
/// with the one before the maximum age (a subquery for `visible_from`)
/// alike: tried by hand.
#[tokio::test]
async fn aged_read_pages_scan_one_window_and_are_not_jit_compiled() {
    for statistics in STATES {
        let Some((sql, pool)) = schema(statistics).await else {
            return;
        };
        let stream = hindsight::Uuid::parse_str("cfcd2084-95d5-65ef-66e7-dff9f98764da").unwrap();
        for aged in [false, true] {
            if aged {
                pool.execute(sqlx::raw_sql(&format!(
                    "UPDATE {}.streams SET max_age = 3600000000",
                    sql.quoted
                )))
                .await
                .expect("set an age");
            }
            let explain = format!("EXPLAIN ANALYZE {}", sql.read_stream);
            for first in [0i64, PAGE] {
                let query = sqlx::query(&explain)
                    .bind(stream)
                    .bind(first)
                    .bind(EVENTS)
                    .bind(PAGE);
                let lines = plan(&pool, query).await;
                let what =
                    format!("the stream page at {first} (aged: {aged}), statistics {statistics:?}");
                check(&lines, PAGE as u64, None, &what);
            }
            if aged {
                let explain = format!("EXPLAIN ANALYZE {}", sql.read_all);
                let query = sqlx::query(&explain)
                    .bind(0i64)
                    .bind(EVENTS.min(window_end(0)))
                    .bind(PAGE);
                let lines = plan(&pool, query).await;
                let what = format!("the aged read_all page, statistics {statistics:?}");
                check(&lines, PAGE as u64, Some(PAGE as u64), &what);
                let explain = format!(
                    "EXPLAIN ANALYZE {}",
                    sql.subscription_page(false, false, false)
                );
                let query = sqlx::query(&explain)
                    .bind(0i64)
                    .bind(PAGE)
                    .bind(window_end(0));
                let lines = plan(&pool, query).await;
                let what = format!("the aged subscription page, statistics {statistics:?}");
                check(&lines, PAGE as u64, Some(PAGE as u64), &what);
            }
        }
        drop(sql, pool).await;
    }
}
