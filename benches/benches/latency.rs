//! Insert-to-delivery latency percentiles, for a subscriber that spins
//! (busy-polls `try_next`, as one following a busy log does) and for one
//! that is parked (`next` after an idle gap longer than its spin phase).
//!
//! Not a criterion benchmark: criterion reports means and medians of
//! batches, and this needs the distribution of single events. Prints one
//! table; run with `cargo bench -p hindsight-benches --bench latency`.

use hindsight::{ExpectedVersion, Selector, StreamId, Transaction};
use hindsight_benches::{quantile, quick, store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Spinning,
    Parked,
}

/// Inserts `samples` single events, `gap` apart, and returns how long each
/// took from just before its insert until the subscriber held it.
fn measure(mode: Mode, samples: usize, gap: Duration) -> Vec<Duration> {
    let store = store();
    let stream = StreamId::new();
    let ready = AtomicBool::new(false);
    let mut lags = std::thread::scope(|scope| {
        let subscriber = scope.spawn(|| {
            let mut subscription = store.subscribe(Selector::all());
            let mut lags = Vec::with_capacity(samples);
            ready.store(true, Ordering::Release);
            while lags.len() < samples {
                let event = match mode {
                    Mode::Spinning => match subscription.try_next().unwrap() {
                        Some(event) => event,
                        None => {
                            std::hint::spin_loop();
                            continue;
                        }
                    },
                    Mode::Parked => subscription.next().unwrap(),
                };
                let sent = event.payload().0[0];
                lags.push(Duration::from_nanos(
                    EPOCH.with(|epoch| epoch.elapsed().as_nanos() as u64) - sent,
                ));
            }
            lags
        });
        while !ready.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        for i in 0..samples {
            let pause = Instant::now();
            while pause.elapsed() < gap {
                if mode == Mode::Parked {
                    std::thread::sleep(gap);
                } else {
                    std::hint::spin_loop();
                }
            }
            let sent = EPOCH.with(|epoch| epoch.elapsed().as_nanos() as u64);
            store
                .insert(Transaction::single(
                    stream,
                    ExpectedVersion::Any,
                    hindsight_benches::Payload([sent, i as u64, 0, 0]),
                ))
                .unwrap();
        }
        subscriber.join().unwrap()
    });
    lags.sort_unstable();
    lags
}

thread_local! {
    /// One clock origin shared by both threads (copied from the global).
    static EPOCH: Instant = *GLOBAL_EPOCH.get_or_init(Instant::now);
}
static GLOBAL_EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and expects a quick smoke run.
    let benching = std::env::args().any(|a| a == "--bench");
    let scale = if !benching {
        0.01
    } else if quick() {
        0.2
    } else {
        1.0
    };
    let runs = [
        (
            "spinning (try_next busy-poll)",
            Mode::Spinning,
            (100_000.0 * scale) as usize,
            Duration::from_micros(5),
        ),
        (
            "parked (next after a 1 ms gap)",
            Mode::Parked,
            (5_000.0 * scale) as usize,
            Duration::from_millis(1),
        ),
    ];
    println!("insert-to-delivery latency, 1-event transactions, one subscriber:");
    println!(
        "{:<34} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "subscriber", "samples", "p50", "p99", "p99.9", "max"
    );
    for (name, mode, samples, gap) in runs {
        let lags = measure(mode, samples.max(10), gap);
        println!(
            "{:<34} {:>8} {:>10.2?} {:>10.2?} {:>10.2?} {:>10.2?}",
            name,
            lags.len(),
            quantile(&lags, 0.5),
            quantile(&lags, 0.99),
            quantile(&lags, 0.999),
            quantile(&lags, 1.0)
        );
    }
}
