//! Loom models of the log's reservation, commit and watermark protocol
//! (`log.rs`, `watermark.rs`), driven directly through `hindsight::loom_api`:
//! no stream locks or index, so far fewer interleavings than through
//! `insert`, and a deeper preemption bound fits in the time budget.
//!
//! In every model the main thread only spawns and joins: loom explores far
//! fewer interleavings of the main thread's own operations (see
//! `MUTATIONS.md`), so every participant runs on a spawned thread.
#![cfg(loom)]

mod common;

use common::{check, Outcomes};
use hindsight::loom_api::{parks, CommitPath, Log, Poisoned};
use loom::sync::Arc;
use loom::thread;

/// Reserves one position, writes `payload` and commits it, without waiting:
/// returns the position and the path the commit took.
fn commit_one(log: &Log<u32>, payload: u32) -> (u64, CommitPath) {
    let mut reservation = log.reserve(1);
    let start = reservation.start();
    reservation.write(payload);
    (start, reservation.commit())
}

/// Every committed payload, in ascending order of value.
fn sorted_payloads(log: &Log<u32>) -> Vec<u32> {
    let mut all: Vec<u32> = log.read_committed().into_iter().copied().collect();
    all.sort_unstable();
    all
}

/// One writer: reserve `payloads.len()` positions, write, commit, wait for
/// the watermark to cover the range, then read the whole committed prefix.
/// Returns the range's start and how many events the read saw.
fn write(log: &Log<u32>, payloads: &[u32]) -> (u64, usize) {
    let mut reservation = log.reserve(payloads.len() as u64);
    let start = reservation.start();
    for &payload in payloads {
        reservation.write(payload);
    }
    reservation.commit();
    log.wait_committed(start + payloads.len() as u64)
        .expect("not poisoned");
    let seen: Vec<u32> = log.read_committed().into_iter().copied().collect();
    assert_eq!(
        &seen[start as usize..start as usize + payloads.len()],
        payloads,
        "read your writes"
    );
    (start, seen.len())
}

/// (a, log level) The stranded commit of DESIGN.md: two writers commit
/// their ranges in either order; whichever commits second must see the
/// other's marker (the `fence(SeqCst)` in `Reservation::commit`) and move
/// the watermark over both, or the writer behind parks forever (loom:
/// deadlock).
#[test]
fn two_committers_never_strand_the_watermark() {
    let name = "two_committers_never_strand_the_watermark";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let log = Arc::new(Log::<u32>::new());
        let writers: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|payload| {
                let log = Arc::clone(&log);
                thread::spawn(move || write(&log, &[payload]))
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        let first = results.iter().find(|r| r.0 == 0).expect("one writer at 0");
        record.record(format!("writer at 0 returned seeing {}", first.1));
        assert_eq!(log.committed(), 2);
        assert_eq!(sorted_payloads(&log), [1, 2]);
    });
    outcomes.require(
        name,
        &[
            "writer at 0 returned seeing 1",
            "writer at 0 returned seeing 2",
        ],
    );
}

/// A reader racing two committers, that never issues a `fence(SeqCst)` of
/// its own (it loads the watermark once and reads below it, as `read_all`
/// does), only ever reads slots whose writes happen-before its read: the
/// marker's Release store, `committed_len`'s Acquire load, the watermark's
/// CAS and `Watermark::get`'s Acquire load must carry each envelope from its
/// writer to the helper that moves the watermark over it, and on to the
/// reader. (A reader that fenced would hide a missing Release/Acquire:
/// loom's `fence(SeqCst)` makes every earlier SeqCst fence happen-before it,
/// which is stronger than C11.) The writers do not wait, so the last to
/// commit must still move the watermark over both.
#[test]
fn a_reader_racing_two_committers_reads_only_published_slots() {
    let name = "a_reader_racing_two_committers_reads_only_published_slots";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let log = Arc::new(Log::<u32>::new());
        let writers: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|payload| {
                let log = Arc::clone(&log);
                thread::spawn(move || commit_one(&log, payload))
            })
            .collect();
        let reader = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let seen: Vec<u32> = log.read_committed().into_iter().copied().collect();
                for payload in &seen {
                    assert!([1, 2].contains(payload), "read {payload}");
                }
                seen.len()
            })
        };
        for writer in writers {
            let (start, path) = writer.join().unwrap();
            if start == 1 {
                record.record(format!("writer at 1 took the {path:?} path"));
            }
        }
        record.record(format!("reader saw {}", reader.join().unwrap()));
        assert_eq!(log.committed(), 2, "the watermark covers both commits");
    });
    outcomes.require(
        name,
        &[
            "reader saw 0",
            "reader saw 1",
            "reader saw 2",
            // The fast path of the writer at 1 republishes the range at 0
            // (its Acquire `is_at`, then its Release `publish`): the reader
            // must reach both paths.
            "writer at 1 took the Fast path",
            "writer at 1 took the Slow path",
        ],
    );
}

/// Three writers (one of two events, so ranges are uneven and one crosses
/// into the second log segment): helpers move the watermark over each
/// other's ranges in any order, and a writer that returns sees every range
/// below the watermark fully written, whichever helper moved it there
/// (the CAS chain of `Watermark::advance`).
#[test]
fn three_committers_hand_the_watermark_along() {
    check("three_committers_hand_the_watermark_along", 2, || {
        let log = Arc::new(Log::<u32>::new());
        let writers: Vec<_> = [&[1u32, 2][..], &[3], &[4]]
            .into_iter()
            .map(|payloads| {
                let log = Arc::clone(&log);
                thread::spawn(move || write(&log, payloads))
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        assert_eq!(log.committed(), 4);
    });
}

/// (g) Poisoning wakes a waiter: one thread reserves a position and drops
/// the reservation uncommitted (what an unwinding writer does: the range is
/// abandoned and the log poisoned), while another commits a position and
/// waits for the watermark to cover it. A writer behind the hole must be
/// woken and told; a writer before it returns normally.
#[test]
fn abandoning_a_reservation_poisons_the_log_and_wakes_a_waiting_writer() {
    let name = "abandoning_a_reservation_poisons_the_log_and_wakes_a_waiting_writer";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let log = Arc::new(Log::<u32>::new());
        let abandoner = {
            let log = Arc::clone(&log);
            thread::spawn(move || drop(log.reserve(1)))
        };
        let writer = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let (start, _) = commit_one(&log, 7);
                (start, log.wait_committed(start + 1))
            })
        };
        abandoner.join().unwrap();
        let (start, result) = writer.join().unwrap();
        assert!(log.is_poisoned());
        if start == 0 {
            assert_eq!(result, Ok(()), "nothing is missing below the writer");
            assert_eq!(log.committed(), 1);
            record.record("writer before the hole");
        } else {
            assert_eq!(result, Err(Poisoned), "the writer behind the hole is told");
            assert_eq!(log.committed(), 0, "the watermark never covers a hole");
            record.record("writer behind the hole");
        }
    });
    outcomes.require(name, &["writer before the hole", "writer behind the hole"]);
}

/// The commit fast path against a writer behind it. The writer at 0 always
/// finds the watermark at its range (nobody else can move it past an unset
/// marker), so it moves the watermark itself: `publish(1)`, marker, one
/// `fence(SeqCst)`, then `committed_len(1)`. The writer at 1 takes the fast
/// path if it sees the watermark at 1, else the slow path (marker, fence,
/// `advance`). When the writer behind commits first and stops (it saw the
/// watermark at 0 and an empty marker there), the fast-path writer's check
/// after its fence must see that commit and carry the watermark over both:
/// the stranded commit of DESIGN.md with one side on the fast path. Neither
/// writer waits, so a stranded watermark shows as a wrong final value, not
/// as a deadlock. Each writer also loads the watermark twice after its
/// commit: it never moves back (a `publish` landing after a helper's CAS
/// past the same range would move it back).
#[test]
fn a_fast_path_commit_carries_the_watermark_over_a_writer_behind_it() {
    let name = "a_fast_path_commit_carries_the_watermark_over_a_writer_behind_it";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let log = Arc::new(Log::<u32>::new());
        let writers: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|payload| {
                let log = Arc::clone(&log);
                thread::spawn(move || {
                    let (start, path) = commit_one(&log, payload);
                    // Loaded after its own commit: a slow-path writer that
                    // moved the watermark over its range itself sees 2.
                    let seen = log.committed();
                    // The watermark never moves back: a fast-path `publish`
                    // cannot land after a helper moved the watermark past it.
                    let again = log.committed();
                    assert!(
                        again >= seen,
                        "the watermark moved back from {seen} to {again}"
                    );
                    (start, path, seen)
                })
            })
            .collect();
        let mut results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        results.sort_unstable_by_key(|r| r.0);
        let [(_, first, _), (_, behind, seen)] = results[..] else {
            unreachable!("two writers at 0 and 1")
        };
        assert_eq!(
            first,
            CommitPath::Fast,
            "the writer at 0 finds the watermark at its range"
        );
        assert_eq!(log.committed(), 2, "the watermark covers both commits");
        assert_eq!(sorted_payloads(&log), [1, 2]);
        record.record(match (behind, seen) {
            (CommitPath::Fast, _) => "writer behind: fast path",
            (CommitPath::Slow, 2) => "writer behind: slow path, then saw the watermark at 2",
            (CommitPath::Slow, _) => "writer behind: slow path, stopped short (carried)",
        });
    });
    outcomes.require(
        name,
        &[
            "writer behind: fast path",
            "writer behind: slow path, then saw the watermark at 2",
            "writer behind: slow path, stopped short (carried)",
        ],
    );
}

/// (c) A waiter parked on the watermark (`Log::wait_for`, through
/// `Signal::wait_until`) while a writer commits on the fast path is woken:
/// the fast path has no `Signal::wake` of its own, only the `fence(SeqCst)`
/// it shares with the stranded-commit handshake and `wake_fenced`'s load of
/// the sleeper count. A lost wake-up is a loom deadlock.
#[test]
fn a_waiter_parked_on_the_watermark_is_woken_by_a_fast_path_commit() {
    let name = "a_waiter_parked_on_the_watermark_is_woken_by_a_fast_path_commit";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let log = Arc::new(Log::<u32>::new());
        let waiter = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                log.wait_committed(1).expect("not poisoned");
                assert_eq!(log.read_committed(), [&7]);
                parks()
            })
        };
        let writer = {
            let log = Arc::clone(&log);
            thread::spawn(move || commit_one(&log, 7).1)
        };
        assert_eq!(writer.join().unwrap(), CommitPath::Fast);
        record.record(match waiter.join().unwrap() {
            0 => "waiter never parked",
            _ => "waiter parked and was woken",
        });
    });
    outcomes.require(
        name,
        &["waiter never parked", "waiter parked and was woken"],
    );
}

/// Reserves `len` positions for a transaction created at `created_at`,
/// writes them and commits without waiting: returns the start and the path.
fn commit_created(
    log: &Log<u32>,
    len: u64,
    created_at: u64,
    correlated: bool,
) -> (u64, CommitPath) {
    let mut reservation = log.reserve_created(len, created_at, correlated);
    let start = reservation.start();
    for _ in 0..len {
        reservation.write(0);
    }
    (start, reservation.commit())
}

/// The contract's rule 26, `created_at` in position order: a transaction
/// created at 20 (one event) and one created at 10 (two events, each stamp in
/// its own record, or one `TxMeta` when `correlated`) race for positions. When
/// the later-created one gets position 0, the other must carry 20 on both its
/// events, whichever path raises it: its own fast path (reading 20 from the
/// watermark's line), or the helper that moves the watermark over it (reading
/// 20 from the slot before it). A reader racing both must only ever see final
/// times: a raise made after the range became visible would show it the earlier
/// value.
fn created_at_follows_positions(name: &str, correlated: bool) {
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let log = Arc::new(Log::<u32>::new());
        let late = {
            let log = Arc::clone(&log);
            thread::spawn(move || commit_created(&log, 1, 20, false))
        };
        let early = {
            let log = Arc::clone(&log);
            thread::spawn(move || commit_created(&log, 2, 10, correlated))
        };
        let reader = {
            let log = Arc::clone(&log);
            thread::spawn(move || log.read_created_at())
        };
        let (late_at, _) = late.join().unwrap();
        let (_, early_path) = early.join().unwrap();
        let seen = reader.join().unwrap();
        assert_eq!(log.committed(), 3, "the watermark covers both commits");
        let times = log.read_created_at();
        let expected = if late_at == 0 {
            [20, 20, 20]
        } else {
            [10, 10, 20]
        };
        assert_eq!(
            times, expected,
            "created_at in position order, late at {late_at}"
        );
        assert_eq!(seen[..], times[..seen.len()], "a reader saw a time change");
        if late_at == 0 {
            record.record(format!(
                "later-created first, earlier one on the {early_path:?} path"
            ));
        } else {
            record.record("earlier-created first");
        }
    });
    outcomes.require(
        name,
        &[
            "later-created first, earlier one on the Fast path",
            "later-created first, earlier one on the Slow path",
            "earlier-created first",
        ],
    );
}

/// (r) [`created_at_follows_positions`] with the time in each record.
#[test]
fn created_at_follows_positions_on_both_commit_paths() {
    created_at_follows_positions("created_at_follows_positions_on_both_commit_paths", false);
}

/// (r) [`created_at_follows_positions`] with the time in the transaction's
/// shared metadata (a correlated transaction).
#[test]
fn correlated_created_at_follows_positions_on_both_commit_paths() {
    created_at_follows_positions(
        "correlated_created_at_follows_positions_on_both_commit_paths",
        true,
    );
}

/// (r) The watermark's line holds the last fast-path commit's time only for
/// the position that commit moved the watermark to. Three one-event
/// transactions created at 10, 30 and 20 race for positions: when the one
/// created at 30 lands at position 1 and is carried over by a helper, the
/// line still holds position 0's time for position 1, so a fast-path writer
/// at position 2 must read 30 from the slot before it, not the line's.
#[test]
fn a_fast_path_after_a_helped_commit_takes_created_at_from_the_slot() {
    let name = "a_fast_path_after_a_helped_commit_takes_created_at_from_the_slot";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let log = Arc::new(Log::<u32>::new());
        let writers: Vec<_> = [10u64, 30, 20]
            .into_iter()
            .map(|created_at| {
                let log = Arc::clone(&log);
                thread::spawn(move || {
                    let (start, path) = commit_created(&log, 1, created_at, false);
                    (start, path, created_at)
                })
            })
            .collect();
        let mut results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        results.sort_unstable_by_key(|r| r.0);
        assert_eq!(log.committed(), 3, "the watermark covers every commit");
        let mut latest = 0;
        let expected: Vec<u64> = results
            .iter()
            .map(|r| {
                latest = latest.max(r.2);
                latest
            })
            .collect();
        assert_eq!(
            log.read_created_at(),
            expected,
            "positions created at {results:?}"
        );
        if results[1].2 == 30
            && results[1].1 == CommitPath::Slow
            && results[2].1 == CommitPath::Fast
        {
            record.record("30 at position 1 helped, position 2 fast");
        }
    });
    outcomes.require(name, &["30 at position 1 helped, position 2 fast"]);
}
