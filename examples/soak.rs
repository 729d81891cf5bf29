//! A soak test of the embedded store with retention: writers append to
//! streams that each keep only their last `--max-count` events (KurrentDB's
//! `$maxCount`), subscribers follow the whole log live, and a sampler
//! records the process's resident memory and its live heap as the log
//! grows. It is the instrument for issue 14's "bounded memory": with the
//! reclamation of removed events (contract rule 30), the live heap stays
//! flat however many events are written, and the summary's "bytes per
//! event" says how close to flat.
//!
//! ```text
//! cargo run --release --example soak
//! cargo run --release --example soak -- --events 100000000
//! cargo run --release --example soak -- --help
//! ```
//!
//! Checked at the end (exit code 1 if any check fails, 2 if a flag is
//! invalid):
//! - every subscriber received positions in strictly increasing order,
//!   each stream's versions in strictly increasing order, and each writer's
//!   events in the order it wrote them;
//! - every stream shows exactly its last `min(max count, length)` versions
//!   to a stream read, and `read_all` shows exactly the sum of those.
//!
//! Reading the output: a table of samples (events written so far, resident
//! memory `VmRSS`, live heap), then the summary: throughput, the peaks
//! (`VmHWM`, and the largest live heap sampled), and the growth between the
//! first sample at or past 10% of the events and the end, in bytes per
//! event written. The live heap is what this example's global allocator
//! counts: bytes allocated and not freed yet (one Relaxed add per
//! allocation and free). Resident memory also holds what the allocator
//! keeps after a free (glibc's arenas), so it can drift while the live
//! heap stays flat. Linux only for `VmRSS` and `VmHWM`.

mod common;

/// Bytes allocated and not freed yet, by every thread of the process.
static LIVE_HEAP: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting [`LIVE_HEAP`].
struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments,
// so `System`'s guarantees are this allocator's; the counter is a plain
// atomic add or subtract.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is `System::alloc`'s.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: std::alloc::Layout) {
        LIVE_HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { std::alloc::System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        LIVE_HEAP.fetch_add(size, Ordering::Relaxed);
        LIVE_HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { std::alloc::System.realloc(pointer, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

use clap::Parser;
use common::count_in;
use hindsight::{
    ExpectedVersion, MemoryStore, Selector, Start, StreamId, StreamVersion, Transaction,
};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Soak test of the hindsight in-memory event store with retention.
///
/// Writers append one-event transactions to random streams that keep only
/// their last --max-count events; subscribers follow the whole log live; a
/// sampler records resident memory as the log grows. Exit code: 0 all
/// checks passed, 1 a check failed, 2 invalid flags.
#[derive(Parser, Debug)]
#[command(name = "soak", verbatim_doc_comment)]
struct Options {
    /// Events to write in all, split evenly between the writers.
    /// At least 1.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10_000_000,
        verbatim_doc_comment
    )]
    #[arg(value_parser = count_in(1, u64::MAX))]
    events: u64,

    /// Streams the writers pick from, uniformly at random. 1 to 10,000,000.
    #[arg(long, value_name = "N", default_value_t = 1_000, verbatim_doc_comment)]
    #[arg(value_parser = count_in(1, 10_000_000))]
    streams: u64,

    /// The maximum count of every stream: only its last N events stay
    /// visible. 0 sets none (the store keeps and shows every event).
    #[arg(long, value_name = "N", default_value_t = 100, verbatim_doc_comment)]
    #[arg(value_parser = count_in(0, u64::MAX))]
    max_count: u64,

    /// Writer threads. 1 to 256.
    #[arg(long, value_name = "N", default_value_t = 2, verbatim_doc_comment)]
    #[arg(value_parser = count_in(1, 256))]
    writers: u64,

    /// Subscriber threads, each following the whole log live. 0 to 256.
    #[arg(long, value_name = "N", default_value_t = 1, verbatim_doc_comment)]
    #[arg(value_parser = count_in(0, 256))]
    subscribers: u64,

    /// Milliseconds between memory samples. 1 to 60,000.
    #[arg(long, value_name = "MS", default_value_t = 100, verbatim_doc_comment)]
    #[arg(value_parser = count_in(1, 60_000))]
    sample_ms: u64,
}

/// An event: who wrote it and its sequence number there (16 bytes).
#[derive(Clone, Copy)]
struct Event {
    writer: u64,
    sequence: u64,
}

/// A small, fast, deterministic generator (xorshift64*), one per writer.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// What one subscriber found.
struct SubscriberReport {
    delivered: u64,
    problems: Vec<String>,
}

/// Follows the whole log live until it has passed `end` (known once the
/// writers are done), checking position and version order. Its bookkeeping
/// is one entry per stream and per writer, so it stays flat however long it
/// runs.
fn follow(store: &MemoryStore<Event>, done: &AtomicBool, end: &AtomicU64) -> SubscriberReport {
    let mut subscription = store.subscribe(Selector::all());
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    let mut sequences: HashMap<u64, u64> = HashMap::new();
    let mut last_position = None;
    let mut report = SubscriberReport {
        delivered: 0,
        problems: Vec::new(),
    };
    loop {
        match subscription.next_timeout(Duration::from_millis(20)) {
            Ok(Some(event)) => {
                report.delivered += 1;
                let position = event.position().0;
                if last_position.is_some_and(|last| position <= last) {
                    report.problems.push(format!(
                        "position {position} delivered after {last_position:?}"
                    ));
                }
                last_position = Some(position);
                // One writer inserts one event at a time, so its events
                // take positions in its own order.
                let Event { writer, sequence } = *event.payload();
                if let Some(previous) = sequences.insert(writer, sequence) {
                    if sequence <= previous {
                        report.problems.push(format!(
                            "writer {writer}'s event {sequence} delivered after {previous}"
                        ));
                    }
                }
                let version = event.version().0;
                if let Some(previous) = versions.insert(event.stream_id(), version) {
                    if version <= previous {
                        report.problems.push(format!(
                            "stream {} version {version} delivered after {previous}",
                            event.stream_id()
                        ));
                    }
                }
            }
            Ok(None) => {}
            Err(error) => {
                report
                    .problems
                    .push(format!("subscription failed: {error}"));
                return report;
            }
        }
        // Acquire: pairs with the Release store of `done`, after `end`.
        if done.load(Ordering::Acquire) {
            let end = end.load(Ordering::Relaxed);
            if subscription.passed().map_or(0, |p| p.0 + 1) >= end {
                return report;
            }
        }
    }
}

fn main() -> ExitCode {
    let options = match Options::try_parse() {
        Ok(options) => options,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    let store = MemoryStore::<Event>::new();
    let streams: Vec<StreamId> = (0..options.streams).map(|_| StreamId::new()).collect();
    if options.max_count > 0 {
        for &stream in &streams {
            if let Err(error) = store.set_max_count(stream, Some(options.max_count)) {
                eprintln!("set_max_count failed: {error}");
                return ExitCode::from(1);
            }
        }
    }
    let written = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let end = AtomicU64::new(0);
    // (events written, VmRSS bytes, live heap bytes)
    let mut samples: Vec<(u64, u64, u64)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut write_time = Duration::ZERO;
    let reports = std::thread::scope(|scope| {
        let subscribers: Vec<_> = (0..options.subscribers)
            .map(|_| scope.spawn(|| follow(&store, &done, &end)))
            .collect();
        let writers: Vec<_> = (0..options.writers)
            .map(|writer| {
                let (store, streams, written) = (&store, &streams, &written);
                let share = options.events / options.writers
                    + u64::from(writer < options.events % options.writers);
                scope.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (writer + 1));
                    for sequence in 0..share {
                        let stream = streams[rng.below(streams.len() as u64) as usize];
                        let event = Event { writer, sequence };
                        store.insert(Transaction::single(stream, ExpectedVersion::Any, event))?;
                        if sequence % 1024 == 1023 {
                            written.fetch_add(1024, Ordering::Relaxed);
                        }
                    }
                    written.fetch_add(share % 1024, Ordering::Relaxed);
                    Ok::<(), hindsight::InsertError>(())
                })
            })
            .collect();
        // The main thread samples memory until the writers are done.
        while !writers.iter().all(|writer| writer.is_finished()) {
            let rss = common::memory("VmRSS:").unwrap_or(0);
            let live = LIVE_HEAP.load(Ordering::Relaxed) as u64;
            samples.push((written.load(Ordering::Relaxed), rss, live));
            std::thread::sleep(Duration::from_millis(options.sample_ms));
        }
        for writer in writers {
            match writer.join() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failures.push(format!("an insert failed: {error}")),
                Err(_) => failures.push("a writer panicked".to_owned()),
            }
        }
        write_time = started.elapsed();
        let rss = common::memory("VmRSS:").unwrap_or(0);
        let live = LIVE_HEAP.load(Ordering::Relaxed) as u64;
        samples.push((written.load(Ordering::Relaxed), rss, live));
        end.store(store.head().map_or(0, |p| p.0 + 1), Ordering::Relaxed);
        // Release: pairs with the subscribers' Acquire load, so they see `end`.
        done.store(true, Ordering::Release);
        subscribers
            .into_iter()
            .map(|subscriber| subscriber.join())
            .collect::<Vec<_>>()
    });
    for report in reports {
        match report {
            Ok(report) => failures.extend(report.problems),
            Err(_) => failures.push("a subscriber panicked".to_owned()),
        }
    }

    // Retention: every stream shows its last min(max count, length) events.
    let mut visible_total = 0u64;
    for &stream in &streams {
        let length = store
            .stream_head(stream)
            .map_or(0, |head| head.version.0 + 1);
        let expected = if options.max_count == 0 {
            length
        } else {
            length.min(options.max_count)
        };
        let visible = store.read_stream(stream, StreamVersion(0)).count() as u64;
        if visible != expected {
            failures.push(format!(
                "stream {stream} shows {visible} events, expected {expected} (length {length})"
            ));
        }
        visible_total += expected;
    }
    let read_all = store.read_all(Start::Beginning).count() as u64;
    if read_all != visible_total {
        failures.push(format!(
            "read_all shows {read_all} events, the streams {visible_total}"
        ));
    }

    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!(
        "{:>14} {:>12} {:>15}",
        "events", "VmRSS MiB", "live heap MiB"
    );
    let step = (samples.len() / 10).max(1);
    for (index, (events, rss, live)) in samples.iter().enumerate() {
        if index % step == 0 || index + 1 == samples.len() {
            println!("{events:>14} {:>12.1} {:>15.1}", mib(*rss), mib(*live));
        }
    }
    let total = written.load(Ordering::Relaxed);
    println!(
        "\n{total} events in {:.2} s: {:.0} events/s, {} streams, max count {}",
        write_time.as_secs_f64(),
        total as f64 / write_time.as_secs_f64(),
        options.streams,
        if options.max_count == 0 {
            "none".to_owned()
        } else {
            options.max_count.to_string()
        },
    );
    println!("visible at the end: {visible_total} events");
    if let Some(peak) = common::memory("VmHWM:") {
        println!("peak memory (VmHWM): {:.1} MiB", mib(peak));
    }
    let peak_live = samples.iter().map(|(_, _, live)| *live).max().unwrap_or(0);
    println!("peak live heap (sampled): {:.1} MiB", mib(peak_live));
    let from = samples.iter().find(|(events, _, _)| *events >= total / 10);
    if let (
        Some(&(first_events, first_rss, first_live)),
        Some(&(last_events, last_rss, last_live)),
    ) = (from, samples.last())
    {
        if last_events > first_events {
            let per_event = |first: u64, last: u64| {
                (last as f64 - first as f64) / (last_events - first_events) as f64
            };
            println!(
                "growth from {first_events} to {last_events} events: {:.1} bytes per event written (VmRSS), {:.1} (live heap)",
                per_event(first_rss, last_rss),
                per_event(first_live, last_live),
            );
        }
    }
    if failures.is_empty() {
        println!("checks: all passed");
        ExitCode::SUCCESS
    } else {
        println!("checks: {} failed", failures.len());
        for failure in failures.iter().take(20) {
            println!("  {failure}");
        }
        ExitCode::from(1)
    }
}
