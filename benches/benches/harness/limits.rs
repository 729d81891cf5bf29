//! The limits each scenario is measured against: what appending and
//! handing over events costs with no event-store semantics at all.
//!
//! - [`vec_push`]: the append limit, an unsynchronised `Vec::push` on one
//!   thread.
//! - [`channel`]: `crossbeam-channel`'s unbounded MPSC queue, each event sent
//!   alone, one consumer receiving all (transport only: no streams, no
//!   versions, no replay).
//! - [`disruptor()`]: the `disruptor` crate's multi-producer ring, each
//!   transaction published as one batch, one busy-spinning consumer
//!   (transport only; events are overwritten once consumed).
//!
//! Each returns the time from releasing the producers until the consumer
//! holds the last event, so the hand-over is part of the figure.

use crate::harness::{time_threads, Payload};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Pushes `txs * size` events (with their positions) onto a fresh `Vec`.
pub fn vec_push(size: u64, txs: u64) -> Duration {
    let mut log: Vec<(u64, Payload)> = Vec::new();
    let started = Instant::now();
    for tx in 0..txs {
        for i in 0..size {
            let position = tx * size + i;
            log.push((position, Payload::new(0, position)));
        }
    }
    let elapsed = started.elapsed();
    black_box(&log);
    drop(log);
    elapsed
}

/// `threads` producers send `txs` transactions of `size` events in all
/// through one unbounded channel to one consumer.
pub fn channel(threads: usize, size: u64, txs: u64) -> Duration {
    let per_thread = txs.div_ceil(threads as u64).max(1);
    let total = per_thread * threads as u64 * size;
    let (sender, receiver) = crossbeam_channel::unbounded::<Payload>();
    time_threads(threads + 1, |thread| {
        if thread == threads {
            let mut sum = 0u64;
            for _ in 0..total {
                sum = sum.wrapping_add(receiver.recv().expect("producers hold senders").0[1]);
            }
            black_box(sum);
        } else {
            for tx in 0..per_thread {
                for i in 0..size {
                    sender
                        .send(Payload::new(thread as u64, tx * size + i))
                        .expect("the consumer outlives the producers");
                }
            }
        }
    })
}

/// `threads` producers publish `txs` transactions of `size` events in all,
/// each as one batch, into a multi-producer disruptor ring of 64 Ki slots
/// with one busy-spinning consumer.
pub fn disruptor(threads: usize, size: u64, txs: u64) -> Duration {
    use disruptor::{build_multi_producer, BusySpinWithSpinLoopHint, Producer};
    let per_thread = txs.div_ceil(threads as u64).max(1);
    let consumed = std::sync::Arc::new(AtomicU64::new(0));
    let seen = std::sync::Arc::clone(&consumed);
    let producer = build_multi_producer(1 << 16, Payload::default, BusySpinWithSpinLoopHint)
        .handle_events_with(move |event: &Payload, _sequence, _end_of_batch| {
            black_box(event);
            // Relaxed: only counted, and read after the consumer is joined.
            seen.fetch_add(1, Ordering::Relaxed);
        })
        .build();
    let producers: Vec<Mutex<Option<_>>> = (0..threads)
        .map(|_| Mutex::new(Some(producer.clone())))
        .collect();
    drop(producer);
    let elapsed = time_threads(threads, |thread| {
        let mut producer = producers[thread]
            .lock()
            .expect("not poisoned")
            .take()
            .expect("one producer per thread");
        for tx in 0..per_thread {
            producer.batch_publish(size as usize, |slots| {
                for (i, slot) in slots.enumerate() {
                    *slot = Payload::new(thread as u64, tx * size + i as u64);
                }
            });
        }
        // Dropping the last producer waits for the consumer to take every
        // published event and joins its thread.
        drop(producer);
    });
    assert_eq!(
        // Relaxed: the consumer thread was joined when the last producer
        // dropped, which orders its counting before this load.
        consumed.load(Ordering::Relaxed),
        per_thread * threads as u64 * size,
        "the disruptor's consumer saw every event"
    );
    elapsed
}

/// One producer sends `events` events to each of `subscribers` unbounded
/// channels (a channel moves each message to one receiver, so a broadcast
/// is a fan-out); each subscriber blocks on `recv`. Timed until every
/// subscriber holds the last event.
pub fn channel_fan_out(subscribers: usize, events: u64) -> Duration {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..subscribers)
        .map(|_| crossbeam_channel::unbounded::<Payload>())
        .unzip();
    time_threads(subscribers + 1, |thread| {
        if thread == subscribers {
            for i in 0..events {
                for sender in &senders {
                    sender
                        .send(Payload::new(0, i))
                        .expect("the subscribers outlive the producer");
                }
            }
        } else {
            for i in 0..events {
                let event = receivers[thread]
                    .recv()
                    .expect("the producer holds senders");
                assert_eq!(event.0[1], i, "crossbeam-channel: delivered in order");
            }
        }
    })
}

/// One producer publishes `events` events into a single-producer
/// disruptor ring of 64 Ki slots that `subscribers` busy-spinning consumers
/// each read in full. Timed until every consumer has taken the last event
/// (dropping the producer waits for them).
pub fn disruptor_fan_out(subscribers: usize, events: u64) -> Duration {
    use disruptor::{build_single_producer, BusySpinWithSpinLoopHint, Producer};
    let consumer = |first: u64| {
        let mut expected = first;
        move |event: &Payload, _sequence: i64, _end_of_batch: bool| {
            assert_eq!(event.0[1], expected, "disruptor: delivered in order");
            expected += 1;
        }
    };
    fn publish(mut producer: impl Producer<Payload>, events: u64) -> Duration {
        let started = Instant::now();
        for i in 0..events {
            producer.publish(|slot| *slot = Payload::new(0, i));
        }
        drop(producer);
        started.elapsed()
    }
    let builder = build_single_producer(1 << 16, Payload::default, BusySpinWithSpinLoopHint)
        .handle_events_with(consumer(0));
    if subscribers == 1 {
        return publish(builder.build(), events);
    }
    let mut builder = builder.handle_events_with(consumer(0));
    for _ in 2..subscribers {
        builder = builder.handle_events_with(consumer(0));
    }
    publish(builder.build(), events)
}
