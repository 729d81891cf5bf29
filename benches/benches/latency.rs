//! Insert-to-delivery latency percentiles, for a subscriber that spins
//! (busy-polls `try_next`, as one following a busy log does) and for one
//! that is parked (`next` after an idle gap longer than its spin phase).
//!
//! Every contender with subscriptions is measured, and `crossbeam-channel`
//! (`try_recv` spinning, `recv` parked) as the transport limit.
//!
//! Not a criterion benchmark: criterion reports means and medians of
//! batches, and this needs the distribution of single events. Writes
//! `perf/latency.md`; run with `cargo bench -p hindsight-benches --bench
//! latency`.

mod harness;

use harness::contender::{Subscribe, Subscription};
use harness::contenders::{eventcore::Eventcore, locked::Locked, seed::Seed};
use harness::{benching, quantile, quick, write_table, Payload};
use hindsight::MemoryStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Spinning,
    Parked,
}

/// Inserts `samples` single events, `gap` apart, and returns how long each
/// took from just before its insert until the subscriber held it.
fn measure<C: Subscribe>(mode: Mode, samples: usize, gap: Duration) -> Vec<Duration> {
    let store = C::new();
    let stream = store.stream(0);
    let ready = AtomicBool::new(false);
    let mut lags = std::thread::scope(|scope| {
        let subscriber = scope.spawn(|| {
            let mut subscription = store.subscribe();
            let mut lags = Vec::with_capacity(samples);
            // Release: pairs with the writer's Acquire below, so the
            // subscription exists before the first insert.
            ready.store(true, Ordering::Release);
            while lags.len() < samples {
                let event = match mode {
                    Mode::Spinning => match subscription.try_next() {
                        Some(event) => event,
                        None => {
                            std::hint::spin_loop();
                            continue;
                        }
                    },
                    Mode::Parked => subscription.next(),
                };
                let sent = event.0[0];
                lags.push(Duration::from_nanos(
                    EPOCH.with(|epoch| epoch.elapsed().as_nanos() as u64) - sent,
                ));
            }
            lags
        });
        // Acquire: pairs with the subscriber's Release above.
        while !ready.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        for i in 0..samples {
            let sent = pause(mode, gap);
            store.append(&stream, &[Payload([sent, i as u64, 0, 0])]);
        }
        subscriber.join().unwrap()
    });
    lags.sort_unstable();
    lags
}

/// Waits `gap` (sleeping before a parked subscriber's sample, spinning
/// before a spinning one's) and returns the send time on the shared clock.
fn pause(mode: Mode, gap: Duration) -> u64 {
    let pause = Instant::now();
    while pause.elapsed() < gap {
        if mode == Mode::Parked {
            std::thread::sleep(gap);
        } else {
            std::hint::spin_loop();
        }
    }
    EPOCH.with(|epoch| epoch.elapsed().as_nanos() as u64)
}

thread_local! {
    /// One clock origin shared by both threads (copied from the global).
    static EPOCH: Instant = *GLOBAL_EPOCH.get_or_init(Instant::now);
}
static GLOBAL_EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// The same through a `crossbeam-channel`: the transport limit.
fn measure_channel(mode: Mode, samples: usize, gap: Duration) -> Vec<Duration> {
    let (sender, receiver) = crossbeam_channel::unbounded::<Payload>();
    let mut lags = std::thread::scope(|scope| {
        let subscriber = scope.spawn(move || {
            let mut lags = Vec::with_capacity(samples);
            while lags.len() < samples {
                let event = match mode {
                    Mode::Spinning => match receiver.try_recv() {
                        Ok(event) => event,
                        Err(_) => {
                            std::hint::spin_loop();
                            continue;
                        }
                    },
                    Mode::Parked => receiver.recv().expect("the sender lives"),
                };
                lags.push(Duration::from_nanos(
                    EPOCH.with(|epoch| epoch.elapsed().as_nanos() as u64) - event.0[0],
                ));
            }
            lags
        });
        for i in 0..samples {
            let sent = pause(mode, gap);
            sender
                .send(Payload([sent, i as u64, 0, 0]))
                .expect("the subscriber lives");
        }
        subscriber.join().unwrap()
    });
    lags.sort_unstable();
    lags
}

fn main() {
    let scale = if !benching() {
        0.01
    } else if quick() {
        0.2
    } else {
        1.0
    };
    let modes = [
        (
            "spinning (`try_next` busy-poll, inserts 5 µs apart)",
            Mode::Spinning,
            (100_000.0 * scale) as usize,
            Duration::from_micros(5),
        ),
        (
            "parked (`next` after a 1 ms idle gap)",
            Mode::Parked,
            (5_000.0 * scale) as usize,
            Duration::from_millis(1),
        ),
    ];
    let mut table = String::from(
        "| subscriber | contender | samples | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|\n",
    );
    for (mode_name, mode, samples, gap) in modes {
        let samples = samples.max(10);
        let mut runs = vec![
            (
                "hindsight",
                measure::<MemoryStore<Payload>>(mode, samples, gap),
            ),
            ("locked", measure::<Locked>(mode, samples, gap)),
            ("seed", measure::<Seed>(mode, samples, gap)),
        ];
        // eventcore's subscription is a poll loop that sleeps 50-100 ms
        // between polls: it has no spinning mode, and a busy `try_next`
        // rescans its whole log on every call.
        if mode == Mode::Parked {
            runs.push(("eventcore", measure::<Eventcore>(mode, samples, gap)));
        }
        runs.push(("crossbeam-channel", measure_channel(mode, samples, gap)));
        for (name, lags) in runs {
            table += &format!(
                "| {mode_name} | {name} | {} | {:.2?} | {:.2?} | {:.2?} | {:.2?} |\n",
                lags.len(),
                quantile(&lags, 0.5),
                quantile(&lags, 0.99),
                quantile(&lags, 0.999),
                quantile(&lags, 1.0)
            );
        }
    }
    table += "\nInsert-to-delivery latency of 1-event transactions, one subscriber.\n";
    write_table("latency", &table);
}
