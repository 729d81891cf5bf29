//! A small load test of the embedded store: what a user would run to see
//! the store hold its semantics under concurrent writers.
//!
//! Writers run random multi-stream transactions with exact expected
//! versions taken from their own (possibly stale) view of each stream, so
//! some lose races and get version conflicts, as real concurrent command
//! handlers do. At the end the log is checked: positions gap-free, every
//! transaction whole and contiguous, stream versions dense and in position
//! order, and every successful insert visible exactly as it returned.
//!
//! ```text
//! cargo run --release --example load -- --writers 4 --transactions 200000
//! ```

use hindsight::{ExpectedVersion, InsertError, MemoryStore, Start, StreamId, Transaction};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Options {
    writers: usize,
    transactions: u64,
    tx_size: u64,
    streams: u64,
}

impl Options {
    fn parse() -> Result<Self, String> {
        let mut options = Options {
            writers: 2,
            transactions: 400_000,
            tx_size: 4,
            streams: 1_000,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            if flag == "--help" || flag == "-h" {
                return Err(String::new());
            }
            let value = args.next().ok_or(format!("{flag} needs a value"))?;
            let number: u64 = value
                .parse()
                .map_err(|_| format!("{flag}: not a number: {value}"))?;
            match flag.as_str() {
                "--writers" => options.writers = number.max(1) as usize,
                "--transactions" => options.transactions = number,
                "--tx-size" => options.tx_size = number.max(1),
                "--streams" => options.streams = number.max(1),
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        Ok(options)
    }
}

/// What a writer puts in each event, so the check can find its transaction.
struct Event {
    writer: u32,
    tx: u64,
    len: u32,
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

fn write(
    store: &MemoryStore<Event>,
    streams: &[StreamId],
    writer: u32,
    txs: u64,
    options: &Options,
    progress: &AtomicU64,
) -> WriterReport {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (u64::from(writer) + 1));
    let mut known: HashMap<StreamId, hindsight::StreamHead> = HashMap::new();
    let mut report = WriterReport::default();
    for tx in 0..txs {
        let len = 1 + rng.below(options.tx_size);
        let width = 1 + rng.below(len.min(3));
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
            // Half the writes use what this writer last saw of the stream.
            let expected = match known.get(&stream) {
                Some(head) if rng.below(2) == 0 => head.expect_exact(),
                _ => ExpectedVersion::Any,
            };
            let events = (0..count).map(|_| Event {
                writer,
                tx,
                len: len as u32,
            });
            builder = builder.append(stream, expected, events);
        }
        match store.insert(builder) {
            Ok(done) => {
                let last = done.last_position().expect("events were written").get();
                report.ranges.push((last + 1 - len, len));
                report.committed_events += len;
                report.committed_txs += 1;
                known.extend(done.streams().iter().copied());
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
        progress.fetch_add(1, Ordering::Relaxed);
    }
    report
}

/// Checks the whole log; returns the problems found.
fn check(store: &MemoryStore<Event>, reports: &[WriterReport]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    let mut ranges: HashMap<u64, u64> = HashMap::new();
    for report in reports {
        ranges.extend(report.ranges.iter().copied());
    }
    let mut expected_position = 0;
    // The transaction being walked: (writer, tx, events left in it).
    let mut current: Option<(u32, u64, u64)> = None;
    for event in store.read_all(Start::Beginning) {
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
            current = (left > 1).then(|| (writer, tx, left - 1));
        }
    }
    let committed: u64 = reports.iter().map(|r| r.committed_events).sum();
    if expected_position != committed {
        problems.push(format!(
            "log holds {expected_position} events, writers committed {committed}"
        ));
    }
    problems
}

fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\nusage: load [--writers N] [--transactions N] [--tx-size N] [--streams N]");
            return ExitCode::from(2);
        }
    };
    let store = MemoryStore::new();
    let streams: Vec<StreamId> = (0..options.streams).map(|_| StreamId::new()).collect();
    let progress = AtomicU64::new(0);
    let bar = ProgressBar::new(options.transactions);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} transactions {per_sec} {eta}")
            .expect("valid template"),
    );

    let started = Instant::now();
    let reports: Vec<WriterReport> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..options.writers)
            .map(|writer| {
                let share = options.transactions / options.writers as u64
                    + u64::from((writer as u64) < options.transactions % options.writers as u64);
                let (store, streams, options, progress) = (&store, &streams, &options, &progress);
                scope.spawn(move || write(store, streams, writer as u32, share, options, progress))
            })
            .collect();
        while writers.iter().any(|w| !w.is_finished()) {
            bar.set_position(progress.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        writers
            .into_iter()
            .map(|w| w.join().expect("writer panicked"))
            .collect()
    });
    let elapsed = started.elapsed();
    bar.finish_and_clear();

    let events: u64 = reports.iter().map(|r| r.committed_events).sum();
    let txs: u64 = reports.iter().map(|r| r.committed_txs).sum();
    let conflicts: u64 = reports.iter().map(|r| r.conflicts).sum();
    let problems = check(&store, &reports);

    println!("writers                {:>12}", options.writers);
    println!("transactions tried     {:>12}", options.transactions);
    println!("transactions committed {:>12}", txs);
    println!("version conflicts      {:>12}", conflicts);
    println!("events committed       {:>12}", events);
    println!("elapsed                {:>12.3} s", elapsed.as_secs_f64());
    println!(
        "insert throughput      {:>12.0} events/s",
        events as f64 / elapsed.as_secs_f64()
    );
    println!(
        "                       {:>12.0} transactions/s",
        (txs + conflicts) as f64 / elapsed.as_secs_f64()
    );
    if problems.is_empty() {
        println!(
            "check                  {:>12}",
            "ok: gap-free, whole transactions, dense versions"
        );
        ExitCode::SUCCESS
    } else {
        for problem in problems.iter().take(20) {
            eprintln!("PROBLEM: {problem}");
        }
        println!(
            "check                  {:>12}",
            format!("FAILED ({} problems)", problems.len())
        );
        ExitCode::FAILURE
    }
}
