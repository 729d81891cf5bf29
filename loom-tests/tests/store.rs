//! Loom models of `MemoryStore`'s real `insert`, reads and pull
//! subscriptions (DESIGN.md, "The data flow").
//!
//! Under loom the log's segments hold 2, 4, ... slots and each stream's
//! index 2, 4, ... positions, so a 3-event transaction already spans two log
//! segments. Every model uses fixed stream ids: `insert` sorts by id, and
//! loom needs each execution to take the same branches for the same
//! interleaving.
//!
//! In every model the main thread only sets up, spawns and joins: loom
//! explored far fewer interleavings of work done on the main thread after
//! it spawned the others (see `MUTATIONS.md`), so every participant runs on
//! a spawned thread, and each model that races for an outcome requires (with
//! `Outcomes`) that its executions reached every interesting one.
#![cfg(loom)]

mod common;

use common::{check, stream, Outcomes};
use hindsight::loom_api::{abandon_a_reservation, fast_commits, parks};
use hindsight::{
    ExpectedVersion, InsertError, MemoryStore, Position, Selector, Start, StreamVersion,
    SubscriptionError, Transaction,
};
use loom::thread;

/// The payloads of `read_all`, after checking each envelope's position.
fn read_all(store: &MemoryStore<u32>) -> Vec<u32> {
    store
        .read_all(Start::Beginning)
        .enumerate()
        .map(|(i, e)| {
            assert_eq!(e.position(), Position(i as u64), "read_all is gap-free");
            *e.payload()
        })
        .collect()
}

/// (a) Two writers commit out of order: two concurrent one-event inserts to
/// different streams. Whichever commits second must move the watermark over
/// both (the stranded commit: without the `fence(SeqCst)` in
/// `Reservation::commit` both can stop, the other writer parks forever and
/// loom reports a deadlock). Each writer then reads the log: its own event
/// is there (read your writes), and any event of the other writer it sees
/// is fully published (loom's `UnsafeCell` tracking of the slot).
#[test]
fn two_writers_committing_out_of_order_both_return_and_the_watermark_covers_both() {
    let name = "two_writers_committing_out_of_order_both_return_and_the_watermark_covers_both";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let writers: Vec<_> = [(1u128, 10u32), (2, 20)]
            .into_iter()
            .map(|(id, payload)| {
                let store = store.clone();
                thread::spawn(move || {
                    let committed = store
                        .insert(Transaction::single(
                            stream(id),
                            ExpectedVersion::Any,
                            payload,
                        ))
                        .expect("insert succeeds");
                    let position = committed.last_position().expect("one event");
                    let seen = read_all(&store);
                    assert_eq!(
                        seen.get(position.get() as usize),
                        Some(&payload),
                        "read your writes"
                    );
                    (payload, position.get(), seen.len())
                })
            })
            .collect();
        let mut results: Vec<(u32, u64, usize)> =
            writers.into_iter().map(|w| w.join().unwrap()).collect();
        results.sort_unstable_by_key(|&(_, position, _)| position);
        assert_eq!(
            results.iter().map(|r| r.1).collect::<Vec<_>>(),
            [0, 1],
            "positions are unique and contiguous"
        );
        record.record(format!("payload {} at position 0", results[0].0));
        record.record(format!("writer at 0 returned seeing {}", results[0].2));
        assert_eq!(store.head(), Some(Position(1)));
        let mut all = read_all(&store);
        all.sort_unstable();
        assert_eq!(all, [10, 20]);
    });
    outcomes.require(
        name,
        &[
            "payload 10 at position 0",
            "payload 20 at position 0",
            "writer at 0 returned seeing 1",
            "writer at 0 returned seeing 2",
        ],
    );
}

/// (b) A reader running `read_all`, `read_stream` and `stream_head` while a
/// writer inserts one 3-event transaction over two streams sees none or all
/// of it, never a slot before it is written (loom's `UnsafeCell` tracking),
/// and never a stream position the watermark does not cover.
#[test]
fn a_reader_sees_all_or_nothing_of_a_concurrent_transaction() {
    let name = "a_reader_sees_all_or_nothing_of_a_concurrent_transaction";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let (a, b) = (stream(1), stream(2));
        let writer = {
            let store = store.clone();
            thread::spawn(move || {
                store
                    .insert(
                        Transaction::new()
                            .append(b, ExpectedVersion::NoStream, [30])
                            .append(a, ExpectedVersion::NoStream, [10, 20]),
                    )
                    .unwrap()
            })
        };
        let reader = {
            let store = store.clone();
            thread::spawn(move || {
                let all = read_all(&store);
                assert!(
                    all.is_empty() || all == [10, 20, 30],
                    "read_all saw part of a transaction: {all:?}"
                );
                let in_a: Vec<(u64, u64, u32)> = store
                    .read_stream(a, StreamVersion(0))
                    .map(|e| (e.version().0, e.position().get(), *e.payload()))
                    .collect();
                assert!(
                    in_a.is_empty() || in_a == [(0, 0, 10), (1, 1, 20)],
                    "read_stream saw part of a transaction: {in_a:?}"
                );
                let head_b = store.stream_head(b);
                assert!(
                    head_b.is_none() || head_b.map(|h| h.position) == Some(Position(2)),
                    "stream_head saw an uncommitted event: {head_b:?}"
                );
                // Reads started later never see less.
                if !all.is_empty() {
                    assert_eq!(store.read_stream(a, StreamVersion(0)).count(), 2);
                }
                (all.len(), in_a.len())
            })
        };
        let committed = writer.join().unwrap();
        let (all, in_a) = reader.join().unwrap();
        record.record(format!("read_all saw {all}"));
        record.record(format!("read_stream saw {in_a}"));
        assert_eq!(committed.last_position(), Some(Position(2)));
        assert_eq!(read_all(&store), [10, 20, 30]);
    });
    outcomes.require(
        name,
        &[
            "read_all saw 0",
            "read_all saw 3",
            "read_stream saw 0",
            "read_stream saw 2",
        ],
    );
}

/// (b) A reader racing two inserts (one of one event, one of two): it sees
/// a prefix of whole transactions, and every slot it reads was published to
/// it through the commit marker of its transaction, the helper that moved
/// the watermark over it and the watermark. The reader issues no
/// `fence(SeqCst)` of its own, so a missing Release/Acquire on that path
/// cannot hide behind loom's (stronger than C11) fence semantics.
#[test]
fn a_reader_racing_two_inserts_sees_whole_published_transactions() {
    let name = "a_reader_racing_two_inserts_sees_whole_published_transactions";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let writers: Vec<_> = [(1u128, &[10u32][..]), (2, &[20, 21])]
            .into_iter()
            .map(|(id, payloads)| {
                let store = store.clone();
                thread::spawn(move || {
                    store
                        .insert(Transaction::new().append(
                            stream(id),
                            ExpectedVersion::Any,
                            payloads.iter().copied(),
                        ))
                        .unwrap()
                })
            })
            .collect();
        let reader = {
            let store = store.clone();
            thread::spawn(move || {
                let all = read_all(&store);
                assert!(
                    [&[][..], &[10], &[20, 21], &[10, 20, 21], &[20, 21, 10]].contains(&&all[..]),
                    "read_all saw {all:?}"
                );
                all.len()
            })
        };
        for writer in writers {
            writer.join().unwrap();
        }
        record.record(format!("reader saw {}", reader.join().unwrap()));
        assert_eq!(store.head(), Some(Position(2)));
    });
    outcomes.require(name, &["reader saw 0", "reader saw 3"]);
}

/// (c) No lost wake-up through the store: a pull subscription blocked in
/// `next()` (it parks on the watermark's `Signal` at once under loom, whose
/// `Backoff` never spins) always receives the event a concurrent writer
/// inserts. The writer's range starts at the watermark, so it commits on the
/// fast path, whose only wake-up is `wake_fenced` after the commit's own
/// `fence(SeqCst)`. A lost wake-up parks the subscriber forever: loom
/// reports a deadlock.
#[test]
fn a_pull_subscription_blocked_in_next_receives_a_concurrent_insert() {
    let name = "a_pull_subscription_blocked_in_next_receives_a_concurrent_insert";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let subscriber = {
            let mut subscription = store.subscribe(Selector::all());
            thread::spawn(move || {
                let envelope = subscription.next().expect("not poisoned");
                (envelope.position(), *envelope.payload(), parks())
            })
        };
        let writer = {
            let store = store.clone();
            thread::spawn(move || {
                store
                    .insert(Transaction::single(stream(1), ExpectedVersion::Any, 7))
                    .unwrap();
                fast_commits()
            })
        };
        assert_eq!(
            writer.join().unwrap(),
            1,
            "the writer at 0 commits on the fast path"
        );
        let (position, payload, parked) = subscriber.join().unwrap();
        assert_eq!((position, payload), (Position(0), 7));
        record.record(if parked > 0 {
            "subscriber parked and was woken"
        } else {
            "subscriber never parked"
        });
    });
    outcomes.require(
        name,
        &["subscriber parked and was woken", "subscriber never parked"],
    );
}

/// (d) Two transactions over the same two streams, built in opposite
/// orders: `insert` locks streams in ascending id order, so they never
/// deadlock; both commit, and on each stream versions follow positions.
#[test]
fn opposite_builder_orders_over_two_streams_never_deadlock_and_versions_follow_positions() {
    let name =
        "opposite_builder_orders_over_two_streams_never_deadlock_and_versions_follow_positions";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let (a, b) = (stream(1), stream(2));
        let ab = {
            let store = store.clone();
            thread::spawn(move || {
                store.insert(
                    Transaction::new()
                        .append(a, ExpectedVersion::Any, [10])
                        .append(b, ExpectedVersion::Any, [11]),
                )
            })
        };
        let ba = {
            let store = store.clone();
            thread::spawn(move || {
                store.insert(
                    Transaction::new()
                        .append(b, ExpectedVersion::Any, [21])
                        .append(a, ExpectedVersion::Any, [20]),
                )
            })
        };
        let ab = ab.join().unwrap().expect("both commit");
        let ba = ba.join().unwrap().expect("both commit");
        let mut ends = [ab.last_position(), ba.last_position()];
        ends.sort_unstable();
        assert_eq!(ends, [Some(Position(1)), Some(Position(3))]);

        for id in [a, b] {
            let events: Vec<(u64, u64)> = store
                .read_stream(id, StreamVersion(0))
                .map(|e| (e.version().0, e.position().get()))
                .collect();
            assert_eq!(events.len(), 2, "both transactions wrote to {id}");
            for (i, &(version, _)) in events.iter().enumerate() {
                assert_eq!(version, i as u64, "versions are dense");
            }
            assert!(events[0].1 < events[1].1, "versions follow positions");
        }
        // Each transaction is contiguous, streams in ascending id order.
        let all: Vec<u32> = read_all(&store);
        assert!(
            all == [10, 11, 20, 21] || all == [20, 21, 10, 11],
            "transactions interleaved: {all:?}"
        );
        record.record(format!(
            "{} first",
            if all[0] == 10 { "a,b" } else { "b,a" }
        ));
    });
    outcomes.require(name, &["a,b first", "b,a first"]);
}

/// (f) Two writers expecting the same exact version of a stream that has one
/// event: exactly one succeeds, the other gets a conflict naming the
/// winner's head, and the loser used no position.
#[test]
fn exactly_one_of_two_writers_expecting_the_same_version_wins() {
    let name = "exactly_one_of_two_writers_expecting_the_same_version_wins";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let s = stream(1);
        store
            .insert(Transaction::single(s, ExpectedVersion::NoStream, 0))
            .unwrap();
        let writers: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|payload| {
                let store = store.clone();
                thread::spawn(move || {
                    let result = store.insert(Transaction::single(
                        s,
                        ExpectedVersion::Exact(StreamVersion(0)),
                        payload,
                    ));
                    if let Err(InsertError::VersionConflict(mismatches)) = &result {
                        // The loser waited until what it reports is visible.
                        assert_eq!(
                            store.stream_head(s),
                            mismatches[0].found,
                            "a conflict reports only a head readers can already see"
                        );
                    }
                    result
                })
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "exactly one wins: {results:?}");
        for result in &results {
            match result {
                Ok(committed) => {
                    assert_eq!(committed.last_position(), Some(Position(1)));
                    assert_eq!(
                        committed.stream(s).map(|h| h.version),
                        Some(StreamVersion(1))
                    );
                }
                Err(InsertError::VersionConflict(mismatches)) => {
                    assert_eq!(mismatches.len(), 1);
                    assert_eq!(
                        mismatches[0].found.map(|h| (h.version, h.position)),
                        Some((StreamVersion(1), Position(1))),
                        "the loser is told the winner's head"
                    );
                }
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        assert_eq!(
            store.head(),
            Some(Position(1)),
            "the loser used no position"
        );
        assert_eq!(store.read_stream(s, StreamVersion(0)).count(), 2);
        let winner = if results[0].is_ok() { 1 } else { 2 };
        record.record(format!("writer {winner} won"));
    });
    outcomes.require(name, &["writer 1 won", "writer 2 won"]);
}

/// (g) A stream's committed length is cut at the watermark, and its
/// positions are published by the Release store of its length: a reader of
/// stream `s` racing the insert of `s`'s first event (at position 1, behind
/// an event of another stream at position 0) sees either nothing or exactly
/// that event, never the other stream's event at a stale position 0.
#[test]
fn a_stream_read_racing_an_insert_sees_only_committed_published_positions() {
    let name = "a_stream_read_racing_an_insert_sees_only_committed_published_positions";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let (other, s) = (stream(1), stream(2));
        store
            .insert(Transaction::single(other, ExpectedVersion::Any, 1))
            .unwrap();
        let writer = {
            let store = store.clone();
            thread::spawn(move || {
                store
                    .insert(Transaction::single(s, ExpectedVersion::NoStream, 2))
                    .unwrap()
            })
        };
        let reader = {
            let store = store.clone();
            thread::spawn(move || {
                let seen: Vec<_> = store
                    .read_stream(s, StreamVersion(0))
                    .map(|e| {
                        (
                            e.stream_id(),
                            e.version().0,
                            e.position().get(),
                            *e.payload(),
                        )
                    })
                    .collect();
                assert!(
                    seen.is_empty() || seen == [(s, 0, 1, 2)],
                    "stream read saw {seen:?}"
                );
                let head = store.stream_head(s);
                assert!(
                    head.is_none() || head.map(|h| h.position) == Some(Position(1)),
                    "stream head {head:?}"
                );
                seen.len()
            })
        };
        writer.join().unwrap();
        record.record(format!("stream read saw {}", reader.join().unwrap()));
        assert_eq!(store.read_stream(s, StreamVersion(0)).count(), 1);
    });
    outcomes.require(name, &["stream read saw 0", "stream read saw 1"]);
}

/// (g) A `NoStream` check with no events on stream `a`, in a transaction
/// that writes to another stream `b`, racing the first write to `a`: the
/// check locks `a` even though it writes nothing there, so it is ordered
/// with the write. If it passes, the write to `a` comes after it in the log;
/// if it fails, it reports a head of `a` that readers can already see when
/// the answer arrives (a failed check waits for what it saw to commit).
#[test]
fn a_no_stream_check_is_ordered_with_the_write_that_creates_the_stream() {
    let name = "a_no_stream_check_is_ordered_with_the_write_that_creates_the_stream";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let (a, b) = (stream(2), stream(1));
        let writer = {
            let store = store.clone();
            thread::spawn(move || {
                store
                    .insert(Transaction::single(a, ExpectedVersion::Any, 2))
                    .unwrap()
            })
        };
        let checker = {
            let store = store.clone();
            thread::spawn(move || {
                let result = store.insert(
                    Transaction::new()
                        .append(a, ExpectedVersion::NoStream, [])
                        .append(b, ExpectedVersion::Any, [1]),
                );
                if let Err(InsertError::VersionConflict(mismatches)) = &result {
                    assert_eq!(mismatches.len(), 1);
                    assert_eq!(
                        store.stream_head(a),
                        mismatches[0].found,
                        "the reported head is visible when the answer arrives"
                    );
                }
                result
            })
        };
        let write = writer.join().unwrap();
        match checker.join().unwrap() {
            Ok(check) => {
                assert!(
                    write.last_position() > check.last_position(),
                    "NoStream passed, yet the write that created the stream came first"
                );
                record.record("check passed, ordered before the write");
            }
            Err(InsertError::VersionConflict(_)) => {
                assert_eq!(
                    store.head(),
                    Some(Position(0)),
                    "the failed check used no position"
                );
                record.record("check failed, ordered after the write");
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    });
    outcomes.require(
        name,
        &[
            "check passed, ordered before the write",
            "check failed, ordered after the write",
        ],
    );
}

/// (g) Poisoning wakes a blocked subscription: a subscriber waits in
/// `next()` while another thread reserves a position and abandons it (the
/// crate's real abandon path, as a writer unwinding between reservation and
/// commit). The subscriber must be woken and told, not left parked.
#[test]
fn poisoning_wakes_a_subscription_blocked_in_next() {
    check("poisoning_wakes_a_subscription_blocked_in_next", 2, || {
        let store = MemoryStore::<u32>::new();
        let subscriber = {
            let mut subscription = store.subscribe(Selector::all());
            thread::spawn(move || subscription.next().map(|e| *e.payload()))
        };
        let abandoner = {
            let store = store.clone();
            thread::spawn(move || abandon_a_reservation(&store))
        };
        abandoner.join().unwrap();
        assert_eq!(subscriber.join().unwrap(), Err(SubscriptionError::Poisoned));
        assert!(store.is_poisoned());
    });
}

/// (c) The same no-lost-wake-up property for `next_async`, which registers
/// a sleeper and awaits the listener as a future (driven by loom's
/// `block_on`, whose waker is loom-tracked).
#[test]
fn an_async_subscription_receives_a_concurrent_insert() {
    check(
        "an_async_subscription_receives_a_concurrent_insert",
        2,
        || {
            let store = MemoryStore::<u32>::new();
            let subscriber = {
                let mut subscription = store.subscribe(Selector::all());
                thread::spawn(move || {
                    loom::future::block_on(async {
                        let envelope = subscription.next_async().await.expect("not poisoned");
                        (envelope.position(), *envelope.payload())
                    })
                })
            };
            let writer = {
                let store = store.clone();
                thread::spawn(move || {
                    store
                        .insert(Transaction::single(stream(1), ExpectedVersion::Any, 7))
                        .unwrap()
                })
            };
            writer.join().unwrap();
            assert_eq!(subscriber.join().unwrap(), (Position(0), 7));
        },
    );
}

/// (c) A one-stream subscription (which follows the stream's own index and
/// cuts it at the watermark) that already delivered its stream's first
/// event, blocked in `next()`, gets the stream's second event and skips the
/// other stream's, however the two inserts and its waits interleave. Its
/// cursor loads the watermark before the stream's length: loaded the other
/// way round, a wake-up for the other stream's event could read the length
/// before the second event is recorded and the watermark after it commits,
/// pass the event and never deliver it (a deadlock here).
#[test]
fn a_stream_subscription_blocked_in_next_receives_only_its_stream() {
    let name = "a_stream_subscription_blocked_in_next_receives_only_its_stream";
    check(name, 2, || {
        let store = MemoryStore::<u32>::new();
        let (other, s) = (stream(1), stream(2));
        store
            .insert(Transaction::single(s, ExpectedVersion::Any, 0))
            .unwrap();
        let mut subscription = store.subscribe(Selector::stream(s));
        let subscriber = thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..2 {
                let envelope = subscription.next().expect("not poisoned");
                got.push((
                    envelope.stream_id(),
                    envelope.position().get(),
                    *envelope.payload(),
                ));
            }
            got
        });
        let writer = {
            let store = store.clone();
            thread::spawn(move || {
                for (id, payload) in [(other, 1), (s, 2)] {
                    store
                        .insert(Transaction::single(id, ExpectedVersion::Any, payload))
                        .unwrap();
                }
            })
        };
        writer.join().unwrap();
        assert_eq!(subscriber.join().unwrap(), [(s, 0, 0), (s, 2, 2)]);
    });
}

/// (c) Targeted wake-ups, the slow path: a one-stream subscription parks on
/// its stream's own signal, which only that stream's writers wake, once
/// their commit is visible. A writer whose range does not start at the
/// watermark (another writer reserved before it and has not committed)
/// commits on the slow path: someone else moves the watermark over its
/// range, and it wakes its stream after `wait_visible_end` saw that, with a
/// `fence(SeqCst)` of its own (`Signal::wake`) pairing with the sleeper's.
/// Without the fence it can read the sleeper count as zero while the
/// sleeper reads the watermark from before the commit: a lost wake-up
/// (a deadlock here).
#[test]
fn a_one_stream_subscription_receives_an_insert_committed_on_the_slow_path() {
    let name = "a_one_stream_subscription_receives_an_insert_committed_on_the_slow_path";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let (other, s) = (stream(1), stream(2));
        let mut subscription = store.subscribe(Selector::stream(s));
        let subscriber = thread::spawn(move || {
            let envelope = subscription.next().expect("not poisoned");
            (*envelope.payload(), parks())
        });
        let writers: Vec<_> = [(other, 1), (s, 2)]
            .into_iter()
            .map(|(id, payload)| {
                let store = store.clone();
                thread::spawn(move || {
                    store
                        .insert(Transaction::single(id, ExpectedVersion::Any, payload))
                        .unwrap();
                    fast_commits()
                })
            })
            .collect();
        let paths: Vec<usize> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        let (payload, parked) = subscriber.join().unwrap();
        assert_eq!(payload, 2);
        if paths[1] == 0 && parked > 0 {
            record.record("its writer committed on the slow path; the subscriber parked");
        }
    });
    outcomes.require(
        name,
        &["its writer committed on the slow path; the subscriber parked"],
    );
}

/// (g) Poisoning commits nothing, so no writer wakes the stream a
/// one-stream subscription parks on: the abandoned reservation wakes every
/// stream's signal itself (`Reservation::wake_on_poison`). The subscribed
/// stream does not exist yet (the subscription holds its empty entry).
#[test]
fn poisoning_wakes_a_one_stream_subscription_parked_on_its_stream() {
    let name = "poisoning_wakes_a_one_stream_subscription_parked_on_its_stream";
    check(name, 2, || {
        let store = MemoryStore::<u32>::new();
        let subscriber = {
            let mut subscription = store.subscribe(Selector::stream(stream(1)));
            thread::spawn(move || subscription.next().map(|e| *e.payload()))
        };
        let abandoner = {
            let store = store.clone();
            thread::spawn(move || abandon_a_reservation(&store))
        };
        abandoner.join().unwrap();
        assert_eq!(subscriber.join().unwrap(), Err(SubscriptionError::Poisoned));
    });
}
