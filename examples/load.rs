//! A small load test of the embedded store: what a user would run to see
//! the store hold its semantics under concurrent writers and subscribers.
//!
//! Writers run random multi-stream transactions with exact expected
//! versions taken from their own (possibly stale) view of each stream, so
//! some lose races and get version conflicts, as concurrent command handlers
//! do. Subscribers follow the log live and measure how long each event took
//! from the start of its insert to its delivery. At the end the log is
//! checked (positions gap-free, every transaction whole and contiguous,
//! stream versions dense and in position order, every successful insert
//! visible where it said) and every subscriber must have seen the identical
//! sequence. The exit code is non-zero if any check fails.
//!
//! ```text
//! cargo run --release --example load -- --writers 4 --subscribers 4 --events 2000000
//! ```

use hindsight::{
    ExpectedVersion, InsertError, MemoryStore, Selector, Start, StreamHead, StreamId, Transaction,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Options {
    writers: usize,
    subscribers: usize,
    events: u64,
    tx_size: u64,
    streams: u64,
}

const USAGE: &str =
    "usage: load [--writers N] [--subscribers N] [--events N] [--tx-size N] [--streams N]";

impl Options {
    fn parse() -> Result<Self, String> {
        let mut options = Options {
            writers: 2,
            subscribers: 2,
            events: 10_000_000,
            tx_size: 4,
            streams: 1_000,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            if flag == "--help" || flag == "-h" {
                return Err(USAGE.to_owned());
            }
            let value = args.next().ok_or(format!("{flag} needs a value"))?;
            let number: u64 = value
                .parse()
                .map_err(|_| format!("{flag}: not a number: {value}"))?;
            match flag.as_str() {
                "--writers" => options.writers = number.max(1) as usize,
                "--subscribers" => options.subscribers = number as usize,
                "--events" => options.events = number,
                "--tx-size" => options.tx_size = number.max(1),
                "--streams" => options.streams = number.max(1),
                _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
            }
        }
        Ok(options)
    }
}

/// What a writer puts in each event, so the checks can find its
/// transaction and the subscribers can measure its delivery lag.
struct Event {
    writer: u32,
    tx: u64,
    len: u32,
    insert_started: Instant,
}

/// A tiny deterministic PRNG (xorshift64*), one per writer.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[derive(Default)]
struct WriterReport {
    committed_events: u64,
    committed_txs: u64,
    conflicts: u64,
    /// (first position, length) of each committed transaction.
    ranges: Vec<(u64, u64)>,
}

/// Runs random transactions until this writer has committed `events`.
fn write(
    store: &MemoryStore<Event>,
    streams: &[StreamId],
    writer: u32,
    events: u64,
    options: &Options,
    progress: &AtomicU64,
) -> WriterReport {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (u64::from(writer) + 1));
    let mut known: HashMap<StreamId, StreamHead> = HashMap::new();
    let mut report = WriterReport::default();
    let mut tx = 0;
    while report.committed_events < events {
        tx += 1;
        let len = (1 + rng.below(options.tx_size)).min(events - report.committed_events);
        let width = 1 + rng.below(len.min(3));
        let insert_started = Instant::now();
        let mut builder = Transaction::new();
        let mut left = len;
        for s in 0..width {
            let stream = streams[rng.below(streams.len() as u64) as usize];
            let count = if s + 1 == width {
                left
            } else {
                1 + rng.below(left - (width - s - 1))
            };
            left -= count;
            // Half the writes expect what this writer last saw of the stream.
            let expected = match known.get(&stream) {
                Some(head) if rng.below(2) == 0 => head.expect_exact(),
                _ => ExpectedVersion::Any,
            };
            let event = || Event {
                writer,
                tx,
                len: len as u32,
                insert_started,
            };
            builder = builder.append(
                stream,
                expected,
                std::iter::repeat_with(event).take(count as usize),
            );
        }
        match store.insert(builder) {
            Ok(done) => {
                let last = done.last_position().expect("events were written").get();
                report.ranges.push((last + 1 - len, len));
                report.committed_events += len;
                report.committed_txs += 1;
                known.extend(done.streams().iter().copied());
                progress.fetch_add(len, Ordering::Relaxed);
            }
            Err(InsertError::VersionConflict(mismatches)) => {
                report.conflicts += 1;
                for mismatch in mismatches {
                    match mismatch.found {
                        Some(head) => known.insert(mismatch.stream, head),
                        None => known.remove(&mismatch.stream),
                    };
                }
            }
            Err(other) => panic!("insert failed: {other}"),
        }
    }
    report
}

/// What a subscriber saw.
struct SubscriberReport {
    events: u64,
    /// A fold of (position, event id, stream, version) of every event.
    hash: u64,
    /// Insert-start-to-delivery lag of every 16th event, in nanoseconds.
    lags: Vec<u64>,
    gaps: u64,
}

fn mix(hash: u64, value: u64) -> u64 {
    (hash ^ value)
        .wrapping_mul(0x0000_0100_0000_01B3)
        .rotate_left(29)
}

fn fold(hash: u64, event: hindsight::Envelope<Event>) -> u64 {
    let (id_hi, id_lo) = event.event_id().as_uuid().as_u64_pair();
    let (stream_hi, stream_lo) = event.stream_id().as_uuid().as_u64_pair();
    [
        event.position().get(),
        id_hi,
        id_lo,
        stream_hi,
        stream_lo,
        event.version().get(),
    ]
    .into_iter()
    .fold(hash, mix)
}

/// Follows the whole log live until it has seen `total` events (known
/// once the writers are done).
fn subscribe(store: &MemoryStore<Event>, total: &AtomicU64) -> SubscriberReport {
    let mut subscription = store.subscribe(Selector::all());
    let mut report = SubscriberReport {
        events: 0,
        hash: 0,
        lags: Vec::new(),
        gaps: 0,
    };
    while report.events < total.load(Ordering::Acquire) {
        let Some(event) = subscription
            .next_timeout(Duration::from_millis(50))
            .expect("store is healthy")
        else {
            continue;
        };
        if report.events.is_multiple_of(16) {
            report
                .lags
                .push(event.payload().insert_started.elapsed().as_nanos() as u64);
        }
        if event.position().get() != report.events {
            report.gaps += 1;
        }
        report.hash = fold(report.hash, event);
        report.events += 1;
    }
    report
}

/// Checks the whole log; returns the problems found.
fn check(store: &MemoryStore<Event>, reports: &[WriterReport]) -> (Vec<String>, u64) {
    let mut problems = Vec::new();
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    let ranges: HashMap<u64, u64> = reports
        .iter()
        .flat_map(|r| r.ranges.iter().copied())
        .collect();
    let mut hash = 0;
    let mut expected_position = 0;
    // The transaction being walked: (writer, tx, events left in it).
    let mut current: Option<(u32, u64, u64)> = None;
    for event in store.read_all(Start::Beginning) {
        hash = fold(hash, event);
        let position = event.position().get();
        if position != expected_position {
            problems.push(format!(
                "gap: expected position {expected_position}, found {position}"
            ));
        }
        expected_position = position + 1;
        let version = versions.entry(event.stream_id()).or_insert(0);
        if event.version().get() != *version {
            problems.push(format!(
                "stream {} has version {} at position {position}, expected {version}",
                event.stream_id(),
                event.version()
            ));
        }
        *version += 1;
        let payload = event.payload();
        if current.is_none() {
            // A transaction starts here: it must be one that an insert returned.
            match ranges.get(&position) {
                Some(&len) if len == u64::from(payload.len) => {
                    current = Some((payload.writer, payload.tx, len))
                }
                _ => problems.push(format!("no committed insert starts at position {position}")),
            }
        }
        if let Some((writer, tx, left)) = current {
            if (writer, tx) != (payload.writer, payload.tx) {
                problems.push(format!(
                    "transaction interleaved with another at position {position}"
                ));
            }
            current = (left > 1).then_some((writer, tx, left - 1));
        }
    }
    let committed: u64 = reports.iter().map(|r| r.committed_events).sum();
    if expected_position != committed {
        problems.push(format!(
            "log holds {expected_position} events, writers committed {committed}"
        ));
    }
    (problems, hash)
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    Duration::from_nanos(sorted[index])
}

fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let store = MemoryStore::new();
    let streams: Vec<StreamId> = (0..options.streams).map(|_| StreamId::new()).collect();
    let progress = AtomicU64::new(0);
    let total = AtomicU64::new(u64::MAX);
    let bar = ProgressBar::new(options.events);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events committed, {per_sec}, eta {eta}")
            .expect("valid template"),
    );

    let started = Instant::now();
    let (writers, writing_time, subscribers) = std::thread::scope(|scope| {
        let subscribers: Vec<_> = (0..options.subscribers)
            .map(|_| scope.spawn(|| subscribe(&store, &total)))
            .collect();
        let writers: Vec<_> = (0..options.writers)
            .map(|writer| {
                let (count, extra) = (
                    options.events / options.writers as u64,
                    options.events % options.writers as u64,
                );
                let share = count + u64::from((writer as u64) < extra);
                let (store, streams, options, progress) = (&store, &streams, &options, &progress);
                scope.spawn(move || write(store, streams, writer as u32, share, options, progress))
            })
            .collect();
        while writers.iter().any(|w| !w.is_finished()) {
            bar.set_position(progress.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        let writing_time = started.elapsed();
        let writers: Vec<WriterReport> = writers
            .into_iter()
            .map(|w| w.join().expect("writer panicked"))
            .collect();
        total.store(
            writers.iter().map(|r| r.committed_events).sum(),
            Ordering::Release,
        );
        let subscribers: Vec<SubscriberReport> = subscribers
            .into_iter()
            .map(|s| s.join().expect("subscriber panicked"))
            .collect();
        (writers, writing_time, subscribers)
    });
    bar.finish_and_clear();

    let events: u64 = writers.iter().map(|r| r.committed_events).sum();
    let txs: u64 = writers.iter().map(|r| r.committed_txs).sum();
    let conflicts: u64 = writers.iter().map(|r| r.conflicts).sum();
    let (mut problems, log_hash) = check(&store, &writers);
    for (i, subscriber) in subscribers.iter().enumerate() {
        if subscriber.events != events || subscriber.gaps != 0 || subscriber.hash != log_hash {
            problems.push(format!(
                "subscriber {i} saw {} events ({} gaps), hash {:x}; the log has {events}, hash {log_hash:x}",
                subscriber.events, subscriber.gaps, subscriber.hash
            ));
        }
    }
    let mut lags: Vec<u64> = subscribers
        .iter()
        .flat_map(|s| s.lags.iter().copied())
        .collect();
    lags.sort_unstable();

    let seconds = writing_time.as_secs_f64();
    println!(
        "writers, subscribers     {:>10}, {}",
        options.writers, options.subscribers
    );
    println!("transactions committed   {txs:>10}");
    println!("version conflicts        {conflicts:>10}");
    println!("events committed         {events:>10}");
    println!("writing time             {seconds:>10.3} s");
    println!(
        "insert throughput        {:>10.0} events/s ({:.0} transactions/s incl. conflicts)",
        events as f64 / seconds,
        (txs + conflicts) as f64 / seconds
    );
    if !lags.is_empty() {
        println!(
            "delivery lag             p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}  ({} samples: insert start to delivery)",
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
            percentile(&lags, 0.999),
            percentile(&lags, 1.0),
            lags.len()
        );
    }
    if problems.is_empty() {
        println!("check                    ok: gap-free, whole transactions, dense versions, {} identical subscriber sequences", options.subscribers);
        ExitCode::SUCCESS
    } else {
        for problem in problems.iter().take(20) {
            eprintln!("PROBLEM: {problem}");
        }
        println!(
            "check                    FAILED ({} problems)",
            problems.len()
        );
        ExitCode::FAILURE
    }
}
