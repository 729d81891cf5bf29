//! What a subscriber wait costs: one-event inserts each followed by a wait
//! until a handler subscriber has handled the event, through the blocking
//! inherent `Subscriber::wait_processed` and through the async
//! `SubscriberHandle::wait_processed` of the `EventStore` trait (on a
//! current-thread Tokio runtime); then the threads alive after 200 async
//! waits abandoned by a 1 ms `tokio::time::timeout` (Linux only).
//!
//! ```sh
//! cargo run --release --example wait_cost            # 2,000 rounds each
//! cargo run --release --example wait_cost -- 10000   # more rounds
//! ```
//!
//! It prints the median, the 90th percentile and the mean of a round
//! (insert plus wait), in microseconds. On a shared machine the figures
//! move with the load: compare the two rows of one run.

use hindsight::{
    EventStore, ExpectedVersion, Flow, MemoryStore, Position, Selector, StreamId, SubscriberHandle,
    Transaction,
};
use std::convert::Infallible;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("the number of rounds"))
        .unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();

    println!("insert + wait_processed, {rounds} rounds (µs per round: median, p90, mean)");
    let blocking = {
        let store = MemoryStore::<u64>::new();
        let stream = store.stream(StreamId::new());
        let subscriber =
            store.spawn_subscriber(Selector::all(), |_| Ok::<_, Infallible>(Flow::Continue));
        let times = (0..rounds)
            .map(|i| {
                let start = Instant::now();
                let head = stream.append_one(ExpectedVersion::Any, i as u64).unwrap();
                subscriber.wait_processed(head.position, PATIENCE).unwrap();
                start.elapsed()
            })
            .collect();
        subscriber.cancel();
        times
    };
    report("inherent (blocking)", blocking);

    let awaited = runtime.block_on(async {
        let store = MemoryStore::<u64>::new();
        let stream = StreamId::new();
        let handle = EventStore::spawn_subscriber(&store, Selector::all(), |_| {
            Ok::<_, Infallible>(Flow::Continue)
        })
        .await
        .unwrap();
        let mut times = Vec::with_capacity(rounds);
        for i in 0..rounds {
            let start = Instant::now();
            let done = EventStore::insert(
                &store,
                Transaction::single(stream, ExpectedVersion::Any, i as u64),
            )
            .await
            .unwrap();
            handle
                .wait_processed(done.last_position().unwrap(), PATIENCE)
                .await
                .unwrap();
            times.push(start.elapsed());
        }
        handle.cancel().await;
        times
    });
    report("trait (async, current-thread runtime)", awaited);

    #[cfg(target_os = "linux")]
    runtime.block_on(async {
        let threads = || std::fs::read_dir("/proc/self/task").unwrap().count();
        let store = MemoryStore::<u64>::new();
        let handle = EventStore::spawn_subscriber(&store, Selector::all(), |_| {
            Ok::<_, Infallible>(Flow::Continue)
        })
        .await
        .unwrap();
        let abandon = || {
            tokio::time::timeout(
                Duration::from_millis(1),
                handle.wait_processed(Position(1_000_000), Duration::from_secs(3600)),
            )
        };
        // The first abandoned wait may start futures-timer's one helper
        // thread, if the rounds above have not.
        assert!(abandon().await.is_err());
        let before = threads();
        for _ in 0..200 {
            assert!(abandon().await.is_err());
        }
        println!(
            "threads: {before} after one abandoned async wait, {} after 200 more",
            threads()
        );
        handle.cancel().await;
    });
}

fn report(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = times.iter().map(|&d| micros(d)).sum::<f64>() / times.len() as f64;
    println!(
        "  {label:<40} {:>8.1} {:>8.1} {:>8.1}",
        micros(times[times.len() / 2]),
        micros(times[times.len() * 9 / 10]),
        mean
    );
}
