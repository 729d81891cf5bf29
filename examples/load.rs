//! A load test of the embedded store: what a user runs to watch the store
//! keep its semantics under concurrent writers and subscribers.
//!
//! Writers run random multi-stream transactions with exact expected versions
//! taken from their own (possibly stale) view of each stream, so some lose
//! races and get version conflicts, as concurrent command handlers do.
//! Subscribers follow the log live and measure how long each event took from
//! the start of its insert to its delivery. Then the whole log is checked:
//! positions gap-free, every transaction whole and contiguous at the
//! positions its insert returned, stream versions dense in position order,
//! and every subscriber saw the identical sequence. The exit code is 1 if any
//! check fails, 2 if a flag is invalid.
//!
//! ```text
//! cargo run --release --example load
//! cargo run --release --example load -- --writers 4 --subscribers 4 --events 2000000
//! cargo run --release --example load -- --help
//! ```
//!
//! Reading the output: one progress bar per phase (write, deliver, check) on
//! stderr, shown only on a terminal; then a table on stdout whose third
//! column says what each figure means. Throughput is the events committed
//! over the writing time, from the first writer's start to the last writer's
//! end, as the writers themselves timed it. The delivery lag covers every
//! event every subscriber received, so on a machine with fewer cores than
//! threads it includes time spent waiting for a core. Peak memory is the
//! process's peak resident set (`VmHWM`, Linux only).
//!
//! The default run (10,000,000 events) takes about 3 s on 2 cores in a
//! release build (2.7 s in two runs on an otherwise idle 2-core machine;
//! longer when other work shares the cores), and peaks at about 0.8 GiB
//! (788 MiB measured): the store keeps every event, about 80 bytes each with
//! this demo's own bookkeeping, so memory grows in proportion to `--events`.

mod common;

use clap::Parser;
use common::count_in;
use hdrhistogram::Histogram;
use hindsight::{
    Committed, ExpectedVersion, InsertError, MemoryStore, Selector, Start, StreamHead, StreamId,
    Transaction,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// The default `--events`: about 3 s on 2 cores in release, 0.8 GiB peak.
const DEFAULT_EVENTS: u64 = 10_000_000;

/// Threads beyond this many are refused rather than left to fail to spawn.
const MAX_THREADS: u64 = 1024;

/// Load test of the hindsight in-memory event store.
///
/// Writers commit random multi-stream transactions with expected versions
/// while subscribers follow the log live. Then the log is checked: positions
/// gap-free, each transaction whole and where its insert said, stream
/// versions dense; and every subscriber must have seen the identical
/// sequence. The summary table says what each figure means.
///
/// Exit code: 0 all checks passed, 1 a check failed, 2 invalid flags.
///
/// Memory: the store keeps every event, about 80 bytes each here, so the
/// default run peaks at about 0.8 GiB; memory grows in proportion to
/// --events. The default run takes about 3 s on 2 cores (release build),
/// longer when other work shares the cores.
#[derive(Parser, Debug)]
#[command(name = "load", verbatim_doc_comment, allow_negative_numbers = true)]
struct Options {
    /// Writer threads; the events are split evenly between them.
    /// 1 to 1024.
    #[arg(long, value_name = "N", default_value_t = 2, verbatim_doc_comment)]
    #[arg(value_parser = count_in(1, MAX_THREADS))]
    writers: u64,

    /// Subscriber threads, each following the whole log live.
    /// 0 to 1024; 0 runs none: no delivery lag, no subscriber check.
    #[arg(long, value_name = "N", default_value_t = 2, verbatim_doc_comment)]
    #[arg(value_parser = count_in(0, MAX_THREADS))]
    subscribers: u64,

    /// Events to commit, over all writers together. At least 1.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_EVENTS, verbatim_doc_comment)]
    #[arg(value_parser = count_in(1, u64::MAX))]
    events: u64,

    /// Largest transaction, in events: each one draws 1 to N events,
    /// spread over 1 to 3 streams. At least 1.
    #[arg(long, value_name = "N", default_value_t = 4, verbatim_doc_comment)]
    #[arg(value_parser = count_in(1, u64::from(u32::MAX)))]
    tx_size: u64,

    /// Streams the transactions pick from; fewer streams, more version
    /// conflicts. At least 1.
    #[arg(long, value_name = "N", default_value_t = 1_000, verbatim_doc_comment)]
    #[arg(value_parser = count_in(1, u64::from(u32::MAX)))]
    streams: u64,
}

/// What a writer puts in each event, so the checks can find its transaction
/// and the subscribers can measure its delivery lag.
#[derive(Clone, Copy)]
struct Event {
    writer: u32,
    tx: u64,
    len: u32,
    insert_started: Instant,
}

/// The fields the checks use, copied out of an event read from the store.
struct Seen {
    position: u64,
    version: u64,
    stream: StreamId,
    /// (position, event id, stream id, version): what subscribers must agree on.
    key: [u64; 6],
    payload: Event,
}

/// Copies a [`Seen`] out of an event. A macro, not a function, so that the
/// demo calls only the accessors and never names the type reads yield.
macro_rules! seen {
    ($event:expr) => {{
        let event = $event;
        let (id_hi, id_lo) = event.event_id().as_uuid().as_u64_pair();
        let (stream_hi, stream_lo) = event.stream_id().as_uuid().as_u64_pair();
        let (position, version) = (event.position().get(), event.version().get());
        Seen {
            position,
            version,
            stream: event.stream_id(),
            key: [position, id_hi, id_lo, stream_hi, stream_lo, version],
            payload: *event.payload(),
        }
    }};
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

/// A counter polled by the progress bars, on its own cache line so that
/// threads bumping neighbouring counters do not slow each other down.
#[repr(align(128))]
#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    // Relaxed: the bars only show these; nothing else is read through them.
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

/// A committed transaction, as its insert reported it.
struct Range {
    first: u64,
    len: u32,
    tx: u64,
}

/// What a writer did.
struct WriterReport {
    committed_events: u64,
    committed_txs: u64,
    conflicts: u64,
    /// Every committed transaction, in commit (so position) order.
    ranges: Vec<Range>,
    started: Instant,
    finished: Instant,
    /// An insert error other than a version conflict, which stops the writer.
    failure: Option<String>,
}

impl WriterReport {
    fn new() -> Self {
        WriterReport {
            committed_events: 0,
            committed_txs: 0,
            conflicts: 0,
            ranges: Vec::new(),
            started: Instant::now(),
            finished: Instant::now(),
            failure: None,
        }
    }

    /// Notes an insert's outcome, and what it told of the streams' heads.
    fn record(
        &mut self,
        outcome: Result<Committed, InsertError>,
        event: Event,
        known: &mut HashMap<StreamId, StreamHead>,
    ) {
        match outcome {
            Ok(done) => self.committed(&done, event, known),
            Err(InsertError::VersionConflict(mismatches)) => {
                self.conflicts += 1;
                for mismatch in mismatches {
                    match mismatch.found {
                        Some(head) => known.insert(mismatch.stream, head),
                        None => known.remove(&mismatch.stream),
                    };
                }
            }
            Err(other) => self.failure = Some(format!("writer {}: {other}", event.writer)),
        }
    }

    /// Notes where a committed transaction landed and the heads it moved.
    fn committed(
        &mut self,
        done: &Committed,
        event: Event,
        known: &mut HashMap<StreamId, StreamHead>,
    ) {
        // The transaction's positions end at the last one its insert returned.
        let last = done.last_position();
        let Some(first) = last.and_then(|last| (last.get() + 1).checked_sub(event.len.into()))
        else {
            let (writer, len) = (event.writer, event.len);
            let message = format!("writer {writer}: insert of {len} events returned {last:?}");
            self.failure = Some(message);
            return;
        };
        let (len, tx) = (event.len, event.tx);
        self.ranges.push(Range { first, len, tx });
        self.committed_events += u64::from(len);
        self.committed_txs += 1;
        known.extend(done.streams().iter().copied());
    }
}

/// What the writer and subscriber threads share.
struct Shared {
    store: MemoryStore<Event>,
    streams: Vec<StreamId>,
    tx_size: u64,
    /// Releases the writers together, so that the writing time is theirs.
    start: Barrier,
    /// Per writer, events committed so far; per subscriber, events received.
    written: Vec<Counter>,
    delivered: Vec<Counter>,
    /// Events committed in all, once the writers are done; `u64::MAX` until
    /// then, so the subscribers keep going.
    total: AtomicU64,
}

impl Shared {
    fn new(options: &Options) -> Self {
        let counters = |n| (0..n).map(|_| Counter::default()).collect();
        Shared {
            store: MemoryStore::new(),
            streams: (0..options.streams).map(|_| StreamId::new()).collect(),
            tx_size: options.tx_size,
            start: Barrier::new(options.writers as usize),
            written: counters(options.writers),
            delivered: counters(options.subscribers),
            total: AtomicU64::new(u64::MAX),
        }
    }
}

/// Builds one random transaction of `len` events over 1 to 3 streams.
/// Half the appends expect the version this writer last saw of the stream.
fn random_transaction(
    rng: &mut Rng,
    streams: &[StreamId],
    known: &HashMap<StreamId, StreamHead>,
    event: Event,
) -> Transaction<Event> {
    let len = u64::from(event.len);
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
        let expected = match known.get(&stream) {
            Some(head) if rng.below(2) == 0 => head.expect_exact(),
            _ => ExpectedVersion::Any,
        };
        let events = std::iter::repeat_n(event, count as usize);
        builder = builder.append(stream, expected, events);
    }
    builder
}

/// Runs random transactions until this writer has committed `events`.
/// Times itself from the moment all writers are ready to its last insert.
fn write(shared: &Shared, writer: u32, events: u64) -> WriterReport {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (u64::from(writer) + 1));
    let mut known: HashMap<StreamId, StreamHead> = HashMap::new();
    shared.start.wait();
    let mut report = WriterReport::new();
    let mut tx = 0;
    while report.committed_events < events && report.failure.is_none() {
        tx += 1;
        let len = (1 + rng.below(shared.tx_size)).min(events - report.committed_events);
        let event = Event {
            writer,
            tx,
            len: len as u32, // at most --tx-size, which is at most u32::MAX
            insert_started: Instant::now(),
        };
        let transaction = random_transaction(&mut rng, &shared.streams, &known, event);
        report.record(shared.store.insert(transaction), event, &mut known);
        shared.written[writer as usize].set(report.committed_events);
    }
    report.finished = Instant::now();
    report
}

/// What a subscriber saw.
struct SubscriberReport {
    events: u64,
    /// A fold of the key of every event, in delivery order.
    hash: u64,
    /// Events delivered at a position other than the next one.
    gaps: u64,
    /// Insert start to delivery, in nanoseconds, of every event.
    lags: Histogram<u64>,
    last_delivery: Option<Instant>,
    failure: Option<String>,
}

fn mix(hash: u64, value: u64) -> u64 {
    (hash ^ value)
        .wrapping_mul(0x0000_0100_0000_01B3)
        .rotate_left(29)
}

fn fold(hash: u64, seen: &Seen) -> u64 {
    seen.key.into_iter().fold(hash, mix)
}

/// An empty lag histogram: 1 ns to 1 hour at 3 significant figures; a longer
/// lag is recorded as 1 hour.
fn lag_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("constant, valid bounds")
}

/// Follows the whole log live until it has seen `total` events (known once
/// the writers are done).
fn subscribe(shared: &Shared, subscriber: usize) -> SubscriberReport {
    let mut subscription = shared.store.subscribe(Selector::all());
    let progress = &shared.delivered[subscriber];
    let mut report = SubscriberReport {
        events: 0,
        hash: 0,
        gaps: 0,
        lags: lag_histogram(),
        last_delivery: None,
        failure: None,
    };
    while report.events < shared.total.load(Ordering::Acquire) {
        // The timeout only bounds how late the subscriber notices that the
        // writers are done; it does not delay any event.
        let event = match subscription.next_timeout(Duration::from_millis(20)) {
            Ok(Some(event)) => seen!(event),
            Ok(None) => continue,
            Err(error) => {
                report.failure = Some(format!("subscription failed: {error}"));
                break;
            }
        };
        let now = Instant::now();
        report.last_delivery = Some(now);
        let lag = (now - event.payload.insert_started).as_nanos();
        report
            .lags
            .saturating_record(u64::try_from(lag).unwrap_or(u64::MAX));
        report.gaps += u64::from(event.position != report.events);
        report.hash = fold(report.hash, &event);
        report.events += 1;
        if report.events.is_multiple_of(4096) {
            progress.set(report.events);
        }
    }
    progress.set(report.events);
    report
}

/// The checks, each counted apart so the summary can say which failed.
#[derive(Clone, Copy)]
enum Check {
    Positions,
    Transactions,
    Versions,
    Subscribers,
    Errors,
}

/// Problems found, per check, with the first few described.
#[derive(Default)]
struct Problems {
    counts: [u64; 5],
    shown: Vec<String>,
}

impl Problems {
    const SHOWN: usize = 20;

    fn push(&mut self, check: Check, message: String) {
        self.counts[check as usize] += 1;
        if self.shown.len() < Self::SHOWN {
            self.shown.push(message);
        }
    }

    fn count(&self, check: Check) -> u64 {
        self.counts[check as usize]
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Walks the log in position order, checking it against what the writers'
/// inserts returned.
struct LogCheck<'a> {
    writers: &'a [WriterReport],
    /// Per writer, the index of its next committed transaction to be found.
    next_range: Vec<usize>,
    versions: HashMap<StreamId, u64>,
    next_position: u64,
    /// The transaction being walked: (writer, tx, events left in it).
    current: Option<(u32, u64, u32)>,
    hash: u64,
}

impl<'a> LogCheck<'a> {
    fn new(writers: &'a [WriterReport]) -> Self {
        LogCheck {
            writers,
            next_range: vec![0; writers.len()],
            versions: HashMap::new(),
            next_position: 0,
            current: None,
            hash: 0,
        }
    }

    fn visit(&mut self, event: &Seen, problems: &mut Problems) {
        self.hash = fold(self.hash, event);
        self.check_position(event, problems);
        self.check_version(event, problems);
        if self.current.is_none() {
            self.start_transaction(event, problems);
        }
        self.check_transaction(event, problems);
    }

    fn check_position(&mut self, event: &Seen, problems: &mut Problems) {
        if event.position != self.next_position {
            let message = format!(
                "gap: expected position {}, found {}",
                self.next_position, event.position
            );
            problems.push(Check::Positions, message);
        }
        self.next_position = event.position + 1;
    }

    fn check_version(&mut self, event: &Seen, problems: &mut Problems) {
        let expected = self.versions.entry(event.stream).or_insert(0);
        if event.version != *expected {
            let message = format!(
                "stream {} has version {} at position {}, expected {expected}",
                event.stream, event.version, event.position
            );
            problems.push(Check::Versions, message);
        }
        *expected = event.version + 1;
    }

    /// A transaction starts here: it must be the next one its writer's
    /// inserts returned, at this very position and with this length.
    fn start_transaction(&mut self, event: &Seen, problems: &mut Problems) {
        let Event {
            writer, tx, len, ..
        } = event.payload;
        let index = writer as usize;
        let next = self.writers.get(index).and_then(|report| {
            let range = report.ranges.get(self.next_range[index])?;
            Some((range.first, range.len, range.tx))
        });
        if next == Some((event.position, len, tx)) {
            self.next_range[index] += 1;
        } else {
            let message = format!(
                "position {} starts writer {writer}'s transaction {tx} ({len} events), \
                 which is not that writer's next committed insert",
                event.position
            );
            problems.push(Check::Transactions, message);
        }
        // Walk it anyway, so one misplaced transaction is one problem.
        self.current = Some((writer, tx, len));
    }

    /// Every event of a transaction follows the previous one with no other
    /// transaction's event between them.
    fn check_transaction(&mut self, event: &Seen, problems: &mut Problems) {
        let Some((writer, tx, left)) = self.current else {
            return;
        };
        if (writer, tx) != (event.payload.writer, event.payload.tx) {
            let message = format!(
                "writer {writer}'s transaction {tx} is interleaved with another at position {}",
                event.position
            );
            problems.push(Check::Transactions, message);
        }
        self.current = (left > 1).then_some((writer, tx, left - 1));
    }

    /// Every committed insert was found; returns the fold of the log's keys.
    fn finish(self, problems: &mut Problems) -> u64 {
        if let Some((writer, tx, left)) = self.current {
            let message =
                format!("the log ends {left} events short of writer {writer}'s transaction {tx}");
            problems.push(Check::Transactions, message);
        }
        for (writer, report) in self.writers.iter().enumerate() {
            for range in &report.ranges[self.next_range[writer]..] {
                let message = format!(
                    "writer {writer}'s insert at position {} ({} events) is not in the log",
                    range.first, range.len
                );
                problems.push(Check::Transactions, message);
            }
        }
        let committed: u64 = self.writers.iter().map(|r| r.committed_events).sum();
        if self.next_position != committed {
            let message = format!(
                "the log holds {} events, the writers committed {committed}",
                self.next_position
            );
            problems.push(Check::Positions, message);
        }
        self.hash
    }
}

/// Checks the whole log; returns the fold of its keys, which every
/// subscriber's must equal.
fn check_log(
    store: &MemoryStore<Event>,
    writers: &[WriterReport],
    problems: &mut Problems,
    bar: &ProgressBar,
) -> u64 {
    let mut check = LogCheck::new(writers);
    for event in store.read_all(Start::Beginning) {
        let event = seen!(event);
        check.visit(&event, problems);
        if event.position.is_multiple_of(65_536) {
            bar.set_position(event.position);
        }
    }
    check.finish(problems)
}

fn check_subscribers(
    subscribers: &[SubscriberReport],
    events: u64,
    log_hash: u64,
    problems: &mut Problems,
) {
    for (i, subscriber) in subscribers.iter().enumerate() {
        if subscriber.events != events || subscriber.gaps != 0 || subscriber.hash != log_hash {
            let message = format!(
                "subscriber {i} saw {} events ({} out of place), hash {:x}; the log has {events}, hash {log_hash:x}",
                subscriber.events, subscriber.gaps, subscriber.hash
            );
            problems.push(Check::Subscribers, message);
        }
    }
}

/// A progress bar on stderr; indicatif hides it when stderr is not a
/// terminal (or `TERM` is `dumb`), so piped and CI output stays clean.
fn phase_bar(len: u64, phase: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let template = format!("{phase:<8} {{bar:40}} {{human_pos}}/{{human_len}} events, eta {{eta}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    bar
}

/// Keeps `bar` at `position()` until `done()`. Display only: nothing is
/// timed from this poll.
fn follow(bar: &ProgressBar, position: impl Fn() -> u64, done: impl Fn() -> bool) {
    while !done() {
        bar.set_position(position());
        std::thread::sleep(Duration::from_millis(10));
    }
    bar.finish_and_clear();
}

/// What the write and deliver phases produced.
struct Run {
    writers: Vec<WriterReport>,
    subscribers: Vec<SubscriberReport>,
}

/// Starts the subscribers, then the writers; waits for both.
fn run(shared: &Shared, options: &Options) -> Run {
    std::thread::scope(|scope| {
        let subscribers: Vec<_> = (0..shared.delivered.len())
            .map(|i| scope.spawn(move || subscribe(shared, i)))
            .collect();
        let writers: Vec<_> = (0..options.writers)
            .map(|i| {
                let events = share(options.events, options.writers, i);
                scope.spawn(move || write(shared, i as u32, events))
            })
            .collect();

        let bar = phase_bar(options.events, "write");
        let written = || shared.written.iter().map(Counter::get).sum();
        follow(&bar, written, || writers.iter().all(|w| w.is_finished()));
        let writers: Vec<WriterReport> = writers.into_iter().map(join).collect();
        let committed = writers.iter().map(|r| r.committed_events).sum();
        shared.total.store(committed, Ordering::Release);

        let bar = phase_bar(committed, "deliver");
        let slowest = || shared.delivered.iter().map(Counter::get).min().unwrap_or(0);
        follow(&bar, slowest, || {
            subscribers.iter().all(|s| s.is_finished())
        });
        let subscribers = subscribers.into_iter().map(join).collect();
        Run {
            writers,
            subscribers,
        }
    })
}

/// Writer `writer`'s share of `events`: an even split, the remainder going
/// to the first writers.
fn share(events: u64, writers: u64, writer: u64) -> u64 {
    events / writers + u64::from(writer < events % writers)
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    // A panic in a worker is a bug in this demo or the store: show it as is.
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `1 writer`, `2 writers`.
fn counted(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{} {noun}s", grouped(n)),
    }
}

/// A duration in the unit that suits its size.
fn human(duration: Duration) -> String {
    let nanos = duration.as_nanos() as f64;
    if nanos < 1e3 {
        format!("{nanos:.0} ns")
    } else if nanos < 1e6 {
        format!("{:.1} µs", nanos / 1e3)
    } else if nanos < 1e9 {
        format!("{:.2} ms", nanos / 1e6)
    } else {
        format!("{:.3} s", nanos / 1e9)
    }
}

/// A rate per second, e.g. `2.41 M`.
fn rate(count: u64, over: Duration) -> String {
    if over.is_zero() {
        return "n/a".to_owned(); // too fast for the clock
    }
    let per_second = count as f64 / over.as_secs_f64();
    if per_second >= 1e6 {
        format!("{:.2} M", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1} k", per_second / 1e3)
    } else {
        format!("{per_second:.0}")
    }
}

/// Rows of (figure, value, what it means), printed with aligned columns.
#[derive(Default)]
struct Table(Vec<[String; 3]>);

impl Table {
    fn row(&mut self, figure: &str, value: impl Into<String>, meaning: impl Into<String>) {
        self.0
            .push([figure.to_owned(), value.into(), meaning.into()]);
    }

    fn print(&self) {
        let width = |column: usize| {
            self.0
                .iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        };
        let (figure, value) = (width(0), width(1));
        for [f, v, m] in &self.0 {
            println!("{f:<figure$}  {v:<value$}  {m}");
        }
    }
}

/// The writers' figures; the writing time spans the first writer's start to
/// the last writer's end, as the writers timed them.
fn write_rows(table: &mut Table, writers: &[WriterReport], subscribers: &[SubscriberReport]) {
    let sum = |figure: fn(&WriterReport) -> u64| writers.iter().map(figure).sum::<u64>();
    let (events, txs) = (sum(|r| r.committed_events), sum(|r| r.committed_txs));
    let conflicts = sum(|r| r.conflicts);
    let started = writers.iter().map(|r| r.started).min();
    let finished = writers.iter().map(|r| r.finished).max();
    let (Some(started), Some(finished)) = (started, finished) else {
        return; // no writer: --writers is at least 1, so never
    };
    let writing = finished - started;
    let events_per_s = format!("{} events/s", rate(events, writing));
    let inserts_per_s = format!("{} inserts/s", rate(txs + conflicts, writing));
    table.row(
        "events committed",
        grouped(events),
        "by all writers together",
    );
    table.row(
        "transactions",
        grouped(txs),
        "committed, each all or nothing",
    );
    table.row(
        "version conflicts",
        grouped(conflicts),
        "inserts refused for a stale expected version",
    );
    table.row(
        "writing time",
        human(writing),
        "first writer's start to last writer's end",
    );
    table.row(
        "insert throughput",
        events_per_s,
        "events committed / writing time",
    );
    table.row(
        "",
        inserts_per_s,
        "(transactions + conflicts) / writing time",
    );
    let last_delivery = subscribers.iter().filter_map(|s| s.last_delivery).max();
    if let Some(delivered) = last_delivery {
        let delivery = human(delivered.saturating_duration_since(started));
        table.row(
            "delivery time",
            delivery,
            "first writer's start to the last delivery",
        );
    }
}

/// Delivery-lag percentiles over every delivery to every subscriber.
fn lag_rows(table: &mut Table, subscribers: &[SubscriberReport]) {
    if subscribers.is_empty() {
        table.row(
            "delivery lag",
            "not measured",
            "no subscriber ran (--subscribers 0)",
        );
        return;
    }
    let mut lags = lag_histogram();
    for subscriber in subscribers {
        lags.add(&subscriber.lags)
            .expect("histograms with the same bounds");
    }
    let at = |quantile| human(Duration::from_nanos(lags.value_at_quantile(quantile)));
    let over = format!(
        "insert start to delivery, over {} deliveries",
        grouped(lags.len())
    );
    table.row("delivery lag", "", over);
    table.row("  p50", at(0.5), "half the deliveries took at most this");
    table.row("  p99", at(0.99), "99% took at most this");
    table.row("  p99.9", at(0.999), "99.9% took at most this");
    table.row("  max", at(1.0), "the slowest delivery");
}

fn memory_row(table: &mut Table) {
    let (value, meaning) = match common::memory("VmHWM:") {
        Some(bytes) => (
            format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0)),
            "peak resident set of the process (VmHWM)",
        ),
        None => (
            "not available".to_owned(),
            "no VmHWM in /proc/self/status here",
        ),
    };
    table.row("peak memory", value, meaning);
}

/// One row per check, with what must hold: "ok", or how many problems
/// the check found.
fn check_rows(table: &mut Table, problems: &Problems, events: u64, subscribers: u64) {
    let verdict = |check| match problems.count(check) {
        0 => "ok".to_owned(),
        n => format!("FAILED ({n})"),
    };
    let positions = match events {
        0 => "no event committed, none in the log".to_owned(),
        1 => "position 0, used once".to_owned(),
        n => format!("positions 0 to {}, each used once", grouped(n - 1)),
    };
    let subscribers = match subscribers {
        0 => None,
        1 => Some("the subscriber saw the log's exact sequence".to_owned()),
        n => Some(format!("each of the {n} saw the log's exact sequence")),
    };
    table.row("checks", "", "what must hold");
    table.row("  positions", verdict(Check::Positions), positions);
    let transactions = "each whole, contiguous, where its insert said";
    table.row("  transactions", verdict(Check::Transactions), transactions);
    let versions = "each stream's versions dense from 0, in position order";
    table.row("  versions", verdict(Check::Versions), versions);
    match subscribers {
        Some(identical) => table.row("  subscribers", verdict(Check::Subscribers), identical),
        None => table.row(
            "  subscribers",
            "skipped",
            "no subscriber ran (--subscribers 0)",
        ),
    }
    let errors = "no insert or subscription failed";
    table.row("  errors", verdict(Check::Errors), errors);
}

fn summary(options: &Options, run: &Run, problems: &Problems) {
    let events: u64 = run.writers.iter().map(|r| r.committed_events).sum();
    let mut table = Table::default();
    let setup = format!(
        "{}, {}; 1 to {} events per transaction, {} streams",
        counted(options.writers, "writer"),
        counted(options.subscribers, "subscriber"),
        options.tx_size,
        grouped(options.streams)
    );
    table.row("events requested", grouped(options.events), setup);
    write_rows(&mut table, &run.writers, &run.subscribers);
    lag_rows(&mut table, &run.subscribers);
    memory_row(&mut table);
    check_rows(&mut table, problems, events, options.subscribers);
    table.print();
}

/// Everything the run got wrong: failures reported by the threads, then
/// the log's checks, then the subscribers'.
fn check(shared: &Shared, run: &Run) -> Problems {
    let mut problems = Problems::default();
    let writer_failures = run.writers.iter().map(|r| &r.failure);
    let subscriber_failures = run.subscribers.iter().map(|s| &s.failure);
    for failure in writer_failures.chain(subscriber_failures).flatten() {
        problems.push(Check::Errors, failure.clone());
    }
    let events = run.writers.iter().map(|r| r.committed_events).sum();
    let bar = phase_bar(events, "check");
    let log_hash = check_log(&shared.store, &run.writers, &mut problems, &bar);
    bar.finish_and_clear();
    check_subscribers(&run.subscribers, events, log_hash, &mut problems);
    problems
}

fn main() -> ExitCode {
    // On bad flags clap prints why and exits with code 2; `--help` prints to
    // stdout and exits with 0.
    let options = Options::parse();
    let shared = Shared::new(&options);
    let run = run(&shared, &options);
    let problems = check(&shared, &run);
    summary(&options, &run, &problems);
    for problem in &problems.shown {
        eprintln!("PROBLEM: {problem}");
    }
    if problems.total() == 0 {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        let (total, shown) = (problems.total(), problems.shown.len());
        println!("{total} problems found; the first {shown} are on stderr");
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(position: u64, stream: StreamId, version: u64, writer: u32, tx: u64, len: u32) -> Seen {
        let payload = Event {
            writer,
            tx,
            len,
            insert_started: Instant::now(),
        };
        let key = [position, 0, 0, 0, 0, version];
        Seen {
            position,
            version,
            stream,
            key,
            payload,
        }
    }

    fn writer(ranges: Vec<Range>) -> WriterReport {
        let committed_events = ranges.iter().map(|r| u64::from(r.len)).sum();
        WriterReport {
            committed_events,
            ranges,
            ..WriterReport::new()
        }
    }

    /// Walks `log` against what the writers' inserts returned.
    fn problems(writers: &[WriterReport], log: &[Seen]) -> Problems {
        let mut problems = Problems::default();
        let mut check = LogCheck::new(writers);
        log.iter()
            .for_each(|event| check.visit(event, &mut problems));
        check.finish(&mut problems);
        problems
    }

    #[test]
    fn a_sound_log_passes() {
        let s = StreamId::new();
        let writers = [writer(vec![Range {
            first: 0,
            len: 2,
            tx: 1,
        }])];
        let log = [seen(0, s, 0, 0, 1, 2), seen(1, s, 1, 0, 1, 2)];
        assert_eq!(problems(&writers, &log).total(), 0);
    }

    #[test]
    fn gaps_interleavings_and_version_holes_are_caught() {
        let (a, b) = (StreamId::new(), StreamId::new());
        let writers = [
            writer(vec![Range {
                first: 0,
                len: 2,
                tx: 1,
            }]),
            writer(vec![Range {
                first: 2,
                len: 1,
                tx: 1,
            }]),
        ];
        let log = [
            seen(0, a, 0, 0, 1, 2),
            seen(1, b, 1, 1, 1, 1),
            seen(3, a, 1, 0, 1, 2),
        ];
        let problems = problems(&writers, &log);
        assert!(problems.count(Check::Positions) > 0);
        assert!(problems.count(Check::Transactions) > 0);
        assert!(problems.count(Check::Versions) > 0);
    }

    #[test]
    fn flags_reject_zero_and_non_numbers_with_a_reason() {
        let writers = count_in(1, MAX_THREADS);
        assert_eq!(writers("4"), Ok(4));
        assert_eq!(writers("0"), Err("must be at least 1".to_owned()));
        assert_eq!(writers("abc"), Err("not a whole number".to_owned()));
        assert_eq!(writers("5000"), Err("must be at most 1024".to_owned()));
        assert!(Options::try_parse_from(["load", "--writers", "0"]).is_err());
        assert!(Options::try_parse_from(["load", "--writers=4"]).is_ok());
    }

    #[test]
    fn shares_add_up_to_the_events() {
        assert_eq!(
            (0..3).map(|w| share(10, 3, w)).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(12), "12");
    }
}
