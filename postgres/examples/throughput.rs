//! Write and catch-up throughput of `PgStore` beside the memory store,
//! through the same `EventStore` code: PERF.md's PostgreSQL section.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:54329/postgres \
//!     cargo run --release -p hindsight-postgres --example throughput
//! ```
//!
//! Writes: 1-, 10- and 100-event transactions, from 1 and from 8 writers
//! (Tokio tasks sharing one store handle; each writer appends to its own
//! stream with an exact expected version, as application code does), into
//! a fresh store (a fresh schema on PostgreSQL) per run. Catch-up: a log of
//! 100-event transactions read whole by `read_all`, and delivered whole to
//! a subscriber started at the beginning (`spawn_subscriber`, then
//! `wait_processed` of the last position). Every figure is the median of
//! `--runs` runs, in events per second; the memory store does `--memory-scale`
//! times as many events, so that its runs are long enough to time.

use clap::Parser;
use hindsight::{
    EventStore, EventType, ExpectedVersion, Flow, MemoryStore, Position, Selector, StreamId,
    SubscriberHandle, Transaction,
};
use hindsight_postgres::PgStore;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// The flags.
#[derive(Parser)]
#[command(about = "Write and catch-up throughput of PgStore beside the memory store")]
struct Args {
    /// Runs per figure (the median is printed).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Events per write run on PostgreSQL, for each transaction size.
    #[arg(long, default_value_t = 8_000)]
    events: u64,
    /// Events of the catch-up log on PostgreSQL.
    #[arg(long, default_value_t = 100_000)]
    catch_up_events: u64,
    /// How many times as many events the memory store's runs do.
    #[arg(long, default_value_t = 50)]
    memory_scale: u64,
}

/// A small event: 8 bytes of payload (a JSON object of ~15 bytes on PostgreSQL).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Ev {
    n: u64,
}

impl EventType for Ev {
    fn event_type(&self) -> &str {
        "Ev"
    }
}

/// Seconds the writers took to append `events` events in transactions of
/// `size`, split evenly between `writers` tasks.
async fn write<S>(store: &S, writers: u64, size: u64, events: u64) -> f64
where
    S: EventStore<Event = Ev, Cursor = Position> + Clone + Send + Sync + 'static,
    S::Error: std::fmt::Debug,
{
    let transactions = events / size / writers;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = StreamId::new();
                let mut expected = ExpectedVersion::NoStream;
                for t in 0..transactions {
                    let events = (0..size).map(|k| Ev { n: t * size + k });
                    let done = store
                        .insert(Transaction::new().append(stream, expected, events))
                        .await
                        .expect("insert");
                    let head = done.stream(stream).expect("the stream was written");
                    expected = ExpectedVersion::Exact(head.version);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a writer panicked");
    }
    started.elapsed().as_secs_f64()
}

/// Fills `store` with `events` events in 100-event transactions, then
/// times a whole `read_all` and a subscriber catching up from the start:
/// (read seconds, subscriber seconds).
async fn catch_up<S>(store: &S, events: u64) -> (f64, f64)
where
    S: EventStore<Event = Ev, Cursor = Position> + Clone + Send + Sync + 'static,
    S::Error: std::fmt::Debug,
{
    write(store, 1, 100, events).await;
    let last = Position(events - 1);
    assert_eq!(store.head().await.expect("head"), Some(last));

    let started = Instant::now();
    let mut read = 0u64;
    store
        .read_all(None, |_| {
            read += 1;
            ControlFlow::Continue(())
        })
        .await
        .expect("read_all");
    let read_seconds = started.elapsed().as_secs_f64();
    assert_eq!(read, events);

    let started = Instant::now();
    let subscriber = store
        .spawn_subscriber(Selector::all(), |_| {
            Ok::<_, std::convert::Infallible>(Flow::Continue)
        })
        .await
        .expect("spawn_subscriber");
    subscriber
        .wait_processed(last, Duration::from_secs(600))
        .await
        .expect("the subscriber caught up");
    let subscribe_seconds = started.elapsed().as_secs_f64();
    subscriber.cancel().await;
    (read_seconds, subscribe_seconds)
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if !n.is_multiple_of(2) {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Events per second, rounded to three significant figures.
fn rate(events: u64, seconds: f64) -> String {
    let r = events as f64 / seconds;
    let digits = (r.log10().floor() as i32 - 2).max(0) as u32;
    let unit = 10f64.powi(digits as i32);
    let rounded = ((r / unit).round() * unit) as u64;
    // Thousands separated by commas, as PERF.md writes them.
    let text = rounded.to_string();
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i > 0 && (text.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

struct Pg {
    url: String,
    schemas: Vec<String>,
}

impl Pg {
    async fn fresh(&mut self) -> PgStore<Ev> {
        let schema = format!("hs_throughput_{}", hindsight::Uuid::new_v4().simple());
        let store = PgStore::connect(&self.url, &schema)
            .await
            .expect("connect to DATABASE_URL");
        self.schemas.push(schema);
        store
    }

    async fn drop_schemas(&mut self) {
        let pool = sqlx::PgPool::connect(&self.url).await.expect("connect");
        for schema in self.schemas.drain(..) {
            sqlx::raw_sql(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&pool)
                .await
                .expect("drop a schema");
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("throughput: set DATABASE_URL to a PostgreSQL server it may create schemas on");
        std::process::exit(2);
    };
    let mut pg = Pg {
        url,
        schemas: Vec::new(),
    };
    let memory_events = args.events * args.memory_scale;
    println!(
        "{} runs per figure; writes of {} events on PostgreSQL, {} on the memory store; \
         events per second, medians",
        args.runs, args.events, memory_events
    );
    println!();
    println!("| transaction | writers | PgStore | MemoryStore | memory / PostgreSQL |");
    println!("|---|---|---|---|---|");
    for size in [1, 10, 100] {
        for writers in [1, 8] {
            let (mut pg_times, mut memory_times) = (Vec::new(), Vec::new());
            for _ in 0..args.runs {
                let store = pg.fresh().await;
                pg_times.push(write(&store, writers, size, args.events).await);
                drop(store);
                pg.drop_schemas().await;
                let store = MemoryStore::<Ev>::new();
                memory_times.push(write(&store, writers, size, memory_events).await);
            }
            let (pg_s, memory_s) = (median(pg_times), median(memory_times));
            let (pg_rate, memory_rate) =
                (args.events as f64 / pg_s, memory_events as f64 / memory_s);
            println!(
                "| {size} event{} | {writers} | {} | {} | {:.0}x |",
                if size == 1 { "" } else { "s" },
                rate(args.events, pg_s),
                rate(memory_events, memory_s),
                memory_rate / pg_rate
            );
        }
    }

    let memory_log = args.catch_up_events * args.memory_scale;
    let (mut pg_read, mut pg_sub, mut mem_read, mut mem_sub) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let store = pg.fresh().await;
        let (read, sub) = catch_up(&store, args.catch_up_events).await;
        pg_read.push(read);
        pg_sub.push(sub);
        drop(store);
        pg.drop_schemas().await;
        let store = MemoryStore::<Ev>::new();
        let (read, sub) = catch_up(&store, memory_log).await;
        mem_read.push(read);
        mem_sub.push(sub);
    }
    println!();
    println!(
        "Catch-up over a log of {} events on PostgreSQL, {} on the memory store:",
        args.catch_up_events, memory_log
    );
    println!();
    println!("| catch-up | PgStore | MemoryStore | memory / PostgreSQL |");
    println!("|---|---|---|---|");
    for (name, pg_s, mem_s) in [
        ("`read_all`", median(pg_read), median(mem_read)),
        ("subscriber from the start", median(pg_sub), median(mem_sub)),
    ] {
        println!(
            "| {name} | {} | {} | {:.0}x |",
            rate(args.catch_up_events, pg_s),
            rate(memory_log, mem_s),
            (memory_log as f64 / mem_s) / (args.catch_up_events as f64 / pg_s)
        );
    }
}
