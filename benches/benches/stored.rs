//! Insert cost against what is already stored: 1-event transactions into a
//! store that holds 1,000 events, and into one that holds 10,000,000.
//!
//! Not a criterion benchmark: each sample needs a store filled to the
//! stated size, and criterion's warm-up would refill it thousands of times.
//! Each sample times `TIMED` inserts, few enough that the store stays
//! within 1% (10M) or a stated bound (1K) of its size; the table gives the
//! median of the samples and their range. Writes `perf/stored.md`.

mod harness;

use harness::contender::{fill, Contender};
use harness::contenders::{locked::Locked, seed::Seed};
use harness::{benching, quick, write_table, Payload};
use hindsight::MemoryStore;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The time per insert of `timed` 1-event transactions into `store`.
fn time_inserts<C: Contender>(store: &C, timed: u64, round: u64) -> Duration {
    let stream = store.stream(1_000 + round);
    let event = [Payload::new(1, 0)];
    let started = Instant::now();
    for _ in 0..timed {
        store.append(&stream, black_box(&event));
    }
    started.elapsed() / timed as u32
}

/// Median and range of `samples` per-insert times, for a store of
/// `stored` events: the small store is refilled for every sample, the big
/// one filled once (the samples grow it by `samples * timed`, under 1%).
fn measure<C: Contender>(stored: u64, samples: u64, timed: u64) -> (Duration, Duration, Duration) {
    let mut times = Vec::new();
    if stored <= 1_000_000 {
        for round in 0..samples {
            let store = C::new();
            fill(&store, stored, 100);
            times.push(time_inserts(&store, timed, round));
        }
    } else {
        let store = C::new();
        fill(&store, stored, 100);
        for round in 0..samples {
            times.push(time_inserts(&store, timed, round));
        }
    }
    times.sort_unstable();
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

/// The same for the append limit: pushes onto a `Vec` that holds `stored`.
fn measure_vec(stored: u64, samples: u64, timed: u64) -> (Duration, Duration, Duration) {
    let mut times = Vec::new();
    for round in 0..samples {
        // Sized for the timed pushes too: otherwise one sample happens to
        // move the whole log and the next does not.
        let mut log: Vec<(u64, Payload)> = Vec::with_capacity((stored + timed) as usize);
        log.extend((0..stored).map(|i| (i, Payload::new(0, i))));
        let started = Instant::now();
        for i in 0..timed {
            log.push((stored + i, Payload::new(1, round)));
        }
        times.push(started.elapsed() / timed as u32);
        black_box(&log);
    }
    times.sort_unstable();
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

fn main() {
    let (big, samples, timed) = if !benching() {
        (100_000, 3, 1_000)
    } else if quick() {
        (10_000_000, 5, 20_000)
    } else {
        (10_000_000, 11, 50_000)
    };
    let mut table = format!(
        "| contender | 1-event insert, 1K stored | {} stored | ratio | samples |\n|---|---|---|---|---|\n",
        harness::si(big as f64)
    );
    let mut row = |name: &str,
                   small: (Duration, Duration, Duration),
                   large: (Duration, Duration, Duration)| {
        table += &format!(
            "| {name} | {:.1?} [{:.1?}, {:.1?}] | {:.1?} [{:.1?}, {:.1?}] | {:.2} | {samples} × {timed} |\n",
            small.0, small.1, small.2, large.0, large.1, large.2,
            large.0.as_secs_f64() / small.0.as_secs_f64()
        );
    };
    fn both<C: Contender>(
        big: u64,
        samples: u64,
        timed: u64,
    ) -> [(Duration, Duration, Duration); 2] {
        [
            measure::<C>(1_000, samples, timed),
            measure::<C>(big, samples, timed),
        ]
    }
    let [small, large] = both::<MemoryStore<Payload>>(big, samples, timed);
    row("hindsight", small, large);
    let [small, large] = both::<Locked>(big, samples, timed);
    row("locked", small, large);
    let [small, large] = both::<Seed>(big, samples, timed);
    row("seed", small, large);
    row(
        "vec-push",
        measure_vec(1_000, samples, timed),
        measure_vec(big, samples, timed),
    );
    table +=
        "\nMedian time per insert, [min, max] over the samples; ratio = big store / small store.\n";
    write_table("stored", &table);
}
