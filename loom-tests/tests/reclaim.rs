//! Loom models of segment reclamation (contract rule 30, `Log::reclaim`,
//! `Segments::{pin, remove, retire, unpinned}`), driven through
//! `hindsight::loom_api`'s `Log`: a reader pinning a capped segment racing
//! its retirement and free (R1), two threads counting the last removals of
//! one segment (R2), a transaction's metadata spanning two capped
//! segments freed in either order, or one freed and the other torn down
//! (R3, R3b), a helper reading slots from a stale watermark under its epoch
//! guard while the segment is retired (R4), and R1 through the store: a
//! `read_all` racing `delete_stream` (R5).
//!
//! Under loom the log's segments hold 2 and 4 slots (positions 0..6), then
//! 4 each: capped segments 6..10, 10..14, ... A segment is retired once all
//! its events are counted removed and the watermark is strictly past it,
//! and freed by a later `reclaim` once no pin holds it and every epoch
//! guard older than the retirement is gone (under loom, once the count of
//! live guards of the stand-in in `epoch.rs` drops to zero: here, when the
//! retiring `reclaim` returns).
//!
//! Use after free is caught through loom's cell tracking: every payload
//! holds a loom `UnsafeCell` that its reader reads and its `Drop` writes,
//! as each slot's record cell is (`committed_record` reads it, the free's
//! drop writes it), so a free not ordered after every read is a causality
//! violation. The transaction metadata (`TxMeta`) holds a loom cell too,
//! read by each release of a unit and each look through a record, written
//! by the free. Leaks and double frees are caught by counts: live payloads
//! (this file) and live `TxMeta`s (`loom_api::live_tx_metas`).
//!
//! As in every model file, the main thread only sets up, spawns and joins
//! (and finishes the reclamation after the joins).
#![cfg(loom)]

mod common;

use common::{check, stream, Outcomes};
use hindsight::loom_api::{completed_segments, live_tx_metas, Log};
use hindsight::{ExpectedVersion, MemoryStore, Start, StreamVersion, Transaction};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use std::cell::{Cell, RefCell};

thread_local! {
    /// Payloads alive on this OS thread: loom runs every thread of a model
    /// on the test's own OS thread, so this counts the current model's.
    static LIVE_PAYLOADS: Cell<isize> = const { Cell::new(0) };
    /// The values of the payloads dropped, in order, since the last
    /// `take_dropped`.
    static DROPPED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// A payload whose value sits in a loom cell: its reader reads the cell,
/// its `Drop` writes it, so loom flags a drop (a segment's free) that is
/// not ordered after every read. Counts itself, and logs its drop.
struct Payload {
    value: UnsafeCell<u64>,
}

// SAFETY: the cell is written only by `Drop` (with `&mut self`) and read
// through `&self` once the log published the record; loom checks that
// every access is ordered, which is what the models are for.
unsafe impl Sync for Payload {}

impl Payload {
    fn new(value: u64) -> Self {
        LIVE_PAYLOADS.with(|live| live.set(live.get() + 1));
        Self {
            value: UnsafeCell::new(value),
        }
    }

    fn get(&self) -> u64 {
        // SAFETY: loom checks the access against the drop's write.
        self.value.with(|p| unsafe { *p })
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        // SAFETY: `&mut self`; loom checks it against every read.
        let value = self
            .value
            .with_mut(|p| unsafe { std::mem::replace(&mut *p, u64::MAX) });
        LIVE_PAYLOADS.with(|live| live.set(live.get() - 1));
        DROPPED.with(|dropped| dropped.borrow_mut().push(value));
    }
}

fn live_payloads() -> isize {
    LIVE_PAYLOADS.with(Cell::get)
}

fn take_dropped() -> Vec<u64> {
    DROPPED.with(|dropped| std::mem::take(&mut *dropped.borrow_mut()))
}

/// Commits one transaction of the payloads `values` (correlated: with a
/// `TxMeta`), on the calling thread, and returns its first position.
fn commit(log: &Log<Payload>, values: std::ops::Range<u64>, correlated: bool) -> u64 {
    let mut reservation = log.reserve_created(values.end - values.start, 0, correlated);
    let start = reservation.start();
    assert_eq!(start, values.start, "the set-up is single-threaded");
    for value in values {
        reservation.write(Payload::new(value));
    }
    reservation.commit();
    start
}

/// A log holding positions 0..11, each payload its position: the geometric
/// region (0..6), capped segment 6..10 whole, and position 10, so that the
/// watermark (11) is strictly past segment 6..10.
fn log_past_one_capped_segment() -> Arc<Log<Payload>> {
    let log = Arc::new(Log::new());
    commit(&log, 0..6, false);
    commit(&log, 6..10, false);
    commit(&log, 10..11, false);
    assert_eq!(log.committed(), 11);
    log
}

/// (R1) A reader reaching position 7 through `Log::reach_one` (a pin on
/// capped segment 6..10, as subscriptions and borrowed reads take) races
/// the segment's retirement and free: all its events are counted removed,
/// and a second thread calls `reclaim` twice (the first retires it and
/// defers the free past its own epoch guard, the second frees it if no pin
/// holds it). The reader either reads the event whole, with the memory
/// freed only after its pin drops (loom flags a payload or record read
/// that is not ordered before the free's drop), or finds the segment gone;
/// each payload is dropped exactly once. Requires a read, a gone, and a
/// retirer that found the segment pinned (freed after the join instead).
#[test]
fn a_reader_pinning_a_segment_races_its_retirement_and_free() {
    let name = "a_reader_pinning_a_segment_races_its_retirement_and_free";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let base = live_payloads();
        let log = log_past_one_capped_segment();
        log.count_removed(6..10);
        let reader = {
            let log = Arc::clone(&log);
            thread::spawn(move || log.read_pinned(7, |event| event.payload().get()))
        };
        let retirer = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                log.reclaim();
                log.reclaim();
                // 11 payloads, 4 of them in the segment.
                live_payloads() - base == 7
            })
        };
        let read = reader.join().unwrap();
        let freed_by_retirer = retirer.join().unwrap();
        match read {
            Some(value) => {
                assert_eq!(value, 7, "the reader read the event whole");
                record.record(if freed_by_retirer {
                    "read, then freed by the retirer"
                } else {
                    "read while the retirer found the segment pinned"
                });
            }
            // The reader's pin that saw the segment retired counts until
            // it drops, so the retirer may still have found it pinned.
            None => record.record("the reader found the segment gone"),
        }
        // The retirer's first `reclaim` retired the segment (the watermark
        // is past it) and its guard is gone: one more frees it if the
        // retirer could not.
        log.reclaim();
        assert_eq!(live_payloads() - base, 7, "the segment's 4 events freed");
        let mut dropped = take_dropped();
        dropped.sort_unstable();
        assert_eq!(dropped, [6, 7, 8, 9], "each dropped once");
        drop(log);
        assert_eq!(live_payloads(), base, "a payload leaked");
        take_dropped();
    });
    outcomes.require(
        name,
        &[
            "read, then freed by the retirer",
            "read while the retirer found the segment pinned",
            "the reader found the segment gone",
        ],
    );
}

/// (R2) Two threads count the removals of capped segment 6..10, two
/// events each (`Log::count_removed`, then `reclaim`, as a deleter and a
/// writer trimming its stream do): whatever the order, exactly one call
/// completes the segment and queues it, and the segment is then retired
/// and freed once (each payload dropped once, none leaked). Requires each
/// thread to complete it.
#[test]
fn two_threads_counting_removals_into_one_segment_complete_it_once() {
    let name = "two_threads_counting_removals_into_one_segment_complete_it_once";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let base = live_payloads();
        let log = log_past_one_capped_segment();
        let counters: Vec<_> = [6..8, 8..10]
            .into_iter()
            .map(|positions| {
                let log = Arc::clone(&log);
                thread::spawn(move || {
                    log.count_removed(positions);
                    log.reclaim();
                    completed_segments()
                })
            })
            .collect();
        let completed: Vec<usize> = counters.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            completed.iter().sum::<usize>(),
            1,
            "exactly one count completes the segment: {completed:?}"
        );
        record.record(if completed[0] == 1 {
            "the first thread completed the segment"
        } else {
            "the second thread completed the segment"
        });
        // Retired by the completing thread's `reclaim` unless the other
        // held the list then; freed by a later one.
        log.reclaim();
        log.reclaim();
        assert_eq!(live_payloads() - base, 7, "the segment's 4 events freed");
        let mut dropped = take_dropped();
        dropped.sort_unstable();
        assert_eq!(dropped, [6, 7, 8, 9], "each dropped once");
        drop(log);
        assert_eq!(live_payloads(), base, "a payload leaked");
        take_dropped();
    });
    outcomes.require(
        name,
        &[
            "the first thread completed the segment",
            "the second thread completed the segment",
        ],
    );
}

/// A log holding positions 0..15: 0..8 uncorrelated, a correlated
/// transaction at 8..11 (its one `TxMeta` spans capped segments 6..10, with
/// two of its events, and 10..14, with one), and 11..15, so that the
/// watermark (15) is past both segments.
fn log_with_a_transaction_over_two_segments() -> Arc<Log<Payload>> {
    let log = Arc::new(Log::new());
    commit(&log, 0..8, false);
    commit(&log, 8..11, true);
    commit(&log, 11..15, false);
    assert_eq!(log.committed(), 15);
    log
}

/// (R3) A correlated transaction at positions 8..11 has one `TxMeta`
/// shared by two capped segments (6..10 and 10..14), each one unit of it.
/// Two threads each count one segment's events removed and reclaim twice,
/// so the segments are freed in either order, on either thread (or after
/// the join). The `TxMeta` is freed exactly once, by the second segment's
/// release: loom flags a free not ordered after the other release (the
/// `TxMeta`'s loom cell), the live count catches a leak or a double free
/// (segment 6..10 holds two of the transaction's events, released once).
/// Requires each segment to be freed first.
#[test]
fn a_transaction_over_two_segments_frees_its_metadata_once_after_both() {
    let name = "a_transaction_over_two_segments_frees_its_metadata_once_after_both";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let base = (live_payloads(), live_tx_metas());
        let log = log_with_a_transaction_over_two_segments();
        assert_eq!(live_tx_metas() - base.1, 1, "one TxMeta");
        let freers: Vec<_> = [6..10, 10..14]
            .into_iter()
            .map(|positions| {
                let log = Arc::clone(&log);
                thread::spawn(move || {
                    log.count_removed(positions);
                    log.reclaim();
                    log.reclaim();
                })
            })
            .collect();
        for freer in freers {
            freer.join().unwrap();
        }
        log.reclaim();
        log.reclaim();
        assert_eq!(live_payloads() - base.0, 7, "both segments freed");
        assert_eq!(live_tx_metas(), base.1, "the TxMeta freed with the second");
        let dropped = take_dropped();
        let at = |value| dropped.iter().position(|&v| v == value).unwrap();
        record.record(if at(9) < at(10) {
            "segment 6..10 freed first"
        } else {
            "segment 10..14 freed first"
        });
        drop(log);
        assert_eq!(live_payloads(), base.0, "a payload leaked");
        assert_eq!(live_tx_metas(), base.1, "the TxMeta freed twice");
        take_dropped();
    });
    outcomes.require(
        name,
        &["segment 6..10 freed first", "segment 10..14 freed first"],
    );
}

/// (R3b) The same transaction, with only its first segment (6..10, which
/// holds its first two events and its commit marker) removed and freed, racing a
/// reader of that first event that looks at its correlation id (in the
/// `TxMeta`) under a pin; the rest is torn down with the log, whose walk
/// finds position 10 with an empty marker at a transaction boundary (the
/// start was freed) and releases the `TxMeta`'s last unit: freed exactly
/// once, after the free of the segment released the first. Requires the
/// reader to read the event and to find the segment gone.
#[test]
fn a_transaction_whose_first_segment_is_freed_frees_its_metadata_at_teardown() {
    let name = "a_transaction_whose_first_segment_is_freed_frees_its_metadata_at_teardown";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let base = (live_payloads(), live_tx_metas());
        let log = log_with_a_transaction_over_two_segments();
        log.count_removed(6..10);
        let reader = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                log.read_pinned(8, |event| {
                    (event.payload().get(), event.correlation_id().is_some())
                })
            })
        };
        let freer = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                log.reclaim();
                log.reclaim();
            })
        };
        let read = reader.join().unwrap();
        freer.join().unwrap();
        match read {
            Some(read) => {
                assert_eq!(read, (8, true), "the reader read the event whole");
                record.record("the reader read the first event");
            }
            None => record.record("the reader found the segment gone"),
        }
        log.reclaim();
        assert_eq!(live_payloads() - base.0, 11, "segment 6..10 freed");
        assert_eq!(
            live_tx_metas() - base.1,
            1,
            "the TxMeta lives while segment 10..14 does"
        );
        drop(log);
        assert_eq!(live_payloads(), base.0, "a payload leaked");
        assert_eq!(
            live_tx_metas(),
            base.1,
            "the TxMeta leaked, or was freed twice"
        );
        take_dropped();
    });
    outcomes.require(
        name,
        &[
            "the reader read the first event",
            "the reader found the segment gone",
        ],
    );
}

/// (R4) Two writers each commit one event at positions 9 and 10 (the last
/// of capped segment 6..10, whose first three are counted removed in the
/// set-up, and the first of 10..14), in either order; the writer at 9
/// then counts its event removed, which completes the segment, and calls
/// `reclaim` twice. The writer at 10 may commit on the slow path and help
/// the watermark from a stale value (9): it reads slots 8 and 9 (their
/// markers and creation times, rule 26) under its epoch guard while the
/// other retires the segment. The free must wait for that guard: loom
/// flags a read of a record not ordered before the free's drop. Requires
/// the writer at 9 to free the segment itself, and to find it retired but
/// not yet quiet (the other writer's guard, older than the retirement, was
/// live: nothing else holds a segment in this model).
#[test]
fn a_helper_reading_a_stale_watermark_under_a_guard_delays_the_free() {
    let name = "a_helper_reading_a_stale_watermark_under_a_guard_delays_the_free";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let base = live_payloads();
        let log = Arc::new(Log::new());
        commit(&log, 0..6, false);
        commit(&log, 6..9, false);
        log.count_removed(6..9);
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let log = Arc::clone(&log);
                thread::spawn(move || {
                    let mut reservation = log.reserve(1);
                    let start = reservation.start();
                    reservation.write(Payload::new(start));
                    reservation.commit();
                    if start != 9 {
                        return None;
                    }
                    log.count_removed(9..10);
                    // The watermark only grows: past 10 here means the
                    // first `reclaim` below retires the segment.
                    let past = log.committed() > 10;
                    log.reclaim();
                    log.reclaim();
                    // 11 payloads, 4 of them in the segment.
                    Some((past, live_payloads() - base == 7))
                })
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        let (past, freed) = results
            .into_iter()
            .flatten()
            .next()
            .expect("one writer got position 9");
        record.record(match (past, freed) {
            (_, true) => "the writer at 9 freed the segment",
            (true, false) => "retired while an older guard was live",
            (false, false) => "the watermark was not past the segment yet",
        });
        log.wait_committed(11).expect("not poisoned");
        log.reclaim();
        log.reclaim();
        assert_eq!(live_payloads() - base, 7, "the segment's 4 events freed");
        let mut dropped = take_dropped();
        dropped.sort_unstable();
        assert_eq!(dropped, [6, 7, 8, 9], "each dropped once");
        drop(log);
        assert_eq!(live_payloads(), base, "a payload leaked");
        take_dropped();
    });
    outcomes.require(
        name,
        &[
            "the writer at 9 freed the segment",
            "retired while an older guard was live",
        ],
    );
}

/// (R5) R1 through the store: stream T holds positions 0..6 and 10, stream
/// S positions 6..10 (capped segment 6..10). A `read_all` through its own
/// store handle (whose envelopes borrow the handle, so it keeps the pins of
/// the segments it read until the handle drops) reads every payload,
/// racing `delete_stream(S)` (which counts S's events removed and calls
/// `reclaim`) and a no-op `truncate_stream(S, 0)` (which calls `reclaim`
/// again, and frees the segment unless the reader's handle pins it). The
/// reader sees T's events and a prefix of S's (those it reached before the
/// delete), every payload it reads is ordered before the free, and each is
/// dropped exactly once. Requires a reader
/// that saw S, one that did not, and the segment freed by the deleter.
#[test]
fn a_read_all_racing_a_delete_keeps_its_segment_until_its_handle_drops() {
    let name = "a_read_all_racing_a_delete_keeps_its_segment_until_its_handle_drops";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let base = live_payloads();
        let (s, t) = (stream(1), stream(2));
        let store = MemoryStore::<Payload>::new();
        for (id, values) in [(t, 0..6), (s, 6..10), (t, 10..11)] {
            store
                .insert(Transaction::new().append(
                    id,
                    ExpectedVersion::Any,
                    values.map(Payload::new),
                ))
                .unwrap();
        }
        let reader = {
            let store = store.clone();
            thread::spawn(move || {
                store
                    .read_all(Start::Beginning)
                    .map(|event| event.payload().get())
                    .collect::<Vec<_>>()
            })
        };
        let deleter = {
            let store = store.clone();
            thread::spawn(move || {
                store.delete_stream(s, ExpectedVersion::Any).unwrap();
                store.truncate_stream(s, StreamVersion(0)).unwrap();
                live_payloads() - base == 7
            })
        };
        let seen = reader.join().unwrap();
        let freed_by_deleter = deleter.join().unwrap();
        // T's events, and S's up to where the reader found them removed
        // (removals hide events from the moment a reader reaches them).
        let of_s = seen.len() - 7;
        let expected: Vec<u64> = (0..6 + of_s as u64).chain([10]).collect();
        assert_eq!(seen, expected, "T's events, and a prefix of S's");
        record.record(match of_s {
            4 => "the reader saw S",
            0 => "the reader did not see S",
            _ => "the reader saw part of S",
        });
        if freed_by_deleter {
            record.record("the deleter freed the segment");
        }
        // Reclaims again: the reader's handle is gone.
        store.truncate_stream(s, StreamVersion(0)).unwrap();
        assert_eq!(live_payloads() - base, 7, "the segment's 4 events freed");
        let mut dropped = take_dropped();
        dropped.sort_unstable();
        assert_eq!(dropped, [6, 7, 8, 9], "each dropped once");
        drop(store);
        assert_eq!(live_payloads(), base, "a payload leaked");
        take_dropped();
    });
    outcomes.require(
        name,
        &[
            "the reader saw S",
            "the reader did not see S",
            "the deleter freed the segment",
        ],
    );
}
