//! A stream's positions by version, with the versions that are removed
//! and counted (contract rule 30) freed.
//!
//! The first versions (508 outside loom) sit in a small geometric array,
//! never freed while the stream lives, so that short streams pay what they
//! always did. Later versions sit in leaves of 512 (4 KiB each), reached
//! through a geometric table of leaf pointers allocated the first time a
//! stream gets that long. A leaf is freed once every version in it is
//! counted removed, but for the leaf of the last counted version, which
//! stays so that the stream's head (its last version, which may be
//! removed by a truncation past it) always has a position.
//!
//! Only the stream's writer, under its lock, writes positions, always at or
//! past its length, which no freed leaf reaches. Readers copy a position
//! out under an epoch guard ([`epoch`]): a freed leaf's pointer is swapped
//! to null first, and its memory freed only once every guard older than
//! the swap is gone, so a reader either reads the position or finds the
//! version freed (it was removed: the reader skips it).

use crate::epoch;
use crate::segments::{self, take, Segments, UNCAPPED};
use crate::sync::{AtomicPtr, AtomicU64, Ordering};
use std::ptr;

/// Slots in the first segment of the small array: 4 outside loom, 2 under it.
#[cfg(not(loom))]
const SHIFT: u32 = 2;
#[cfg(loom)]
const SHIFT: u32 = 1;

/// Segments of the small array: 4, 8, ..., 256 (508 versions) outside
/// loom; 2 and 4 (6 versions) under it.
#[cfg(not(loom))]
const HEAD_SEGMENTS: u32 = 7;
#[cfg(loom)]
const HEAD_SEGMENTS: u32 = 2;

/// The first version past the small array.
const HEAD_END: u64 = ((1 << HEAD_SEGMENTS) - 1) << SHIFT;

/// Versions per leaf: 512 outside loom (4 KiB), 2 under it.
#[cfg(not(loom))]
const LEAF_SHIFT: u32 = 9;
#[cfg(loom)]
const LEAF_SHIFT: u32 = 1;

/// Versions per leaf.
const LEAF_LEN: usize = 1 << LEAF_SHIFT;

/// The positions of `LEAF_LEN` consecutive versions.
type Leaf = [AtomicU64; LEAF_LEN];

/// A slot of the leaf table: null, or a leaf.
#[derive(Default)]
struct LeafSlot(AtomicPtr<Leaf>);

// SAFETY: an all-zero `LeafSlot` is a null `AtomicPtr`, its default.
unsafe impl segments::Slot for LeafSlot {}

/// The leaf table: slot `k` holds versions `HEAD_END + k * LEAF_LEN ..`.
type Table = Segments<LeafSlot, 2, 0, UNCAPPED>;

pub(crate) struct Positions {
    /// Versions below `HEAD_END`.
    head: Segments<AtomicU64, SHIFT, 0, UNCAPPED>,
    /// The leaf table, allocated by the first write past `HEAD_END`.
    table: AtomicPtr<Table>,
    /// Leaves below this were freed (their pointers swapped to null).
    freed: AtomicU64,
    /// Leaves allocated so far: every leaf pointer at or past it is null.
    /// Written by the writer, under the stream's lock.
    leaves: AtomicU64,
    /// The writer's last leaf and its index (`u64::MAX` for none): the
    /// next write is almost always there. Only the writer, under the
    /// stream's lock, reads and writes them (Relaxed); never a freed leaf
    /// (the writer's versions are never freed).
    last: AtomicPtr<Leaf>,
    last_index: AtomicU64,
}

/// A leaf whose pointer was swapped out, freed when dropped (by the epoch's
/// collector, once no guard can still read it).
struct Freed(*mut Leaf);

// SAFETY: a `Freed` owns its leaf alone (its pointer left the table), and
// a leaf of atomics may be freed on any thread.
unsafe impl Send for Freed {}

impl Drop for Freed {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::into_raw` in `leaf_or_alloc`
        // and left the table by the one swap that took it: freed once.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

/// The leaf and offset of version `version >= HEAD_END`.
#[inline]
fn leaf_of(version: u64) -> (u64, usize) {
    let within = version - HEAD_END;
    (
        within >> LEAF_SHIFT,
        (within & (LEAF_LEN as u64 - 1)) as usize,
    )
}

impl Positions {
    pub(crate) fn new() -> Self {
        Self {
            head: Segments::new(),
            table: AtomicPtr::new(ptr::null_mut()),
            freed: AtomicU64::new(0),
            leaves: AtomicU64::new(0),
            last: AtomicPtr::new(ptr::null_mut()),
            last_index: AtomicU64::new(u64::MAX),
        }
    }

    /// The leaf table, if any write allocated it.
    #[inline]
    fn table(&self) -> Option<&Table> {
        // Acquire: pairs with the Release store in `table_or_alloc`.
        let table = self.table.load(Ordering::Acquire);
        // SAFETY: a non-null table came from `Box::into_raw` and stays
        // until `self` drops.
        (!table.is_null()).then(|| unsafe { &*table })
    }

    /// The writer's slots from version `version` to the end of its segment
    /// or leaf, allocating as needed. Only under the stream's lock, for
    /// versions at or past the stream's length (never freed).
    ///
    /// Never panics (allocation failure aborts).
    pub(crate) fn run_or_alloc(&self, version: u64) -> &[AtomicU64] {
        if version < HEAD_END {
            let run = self.head.run_or_alloc(version);
            let left = (HEAD_END - version) as usize;
            return &run[..run.len().min(left)];
        }
        let (index, offset) = leaf_of(version);
        // Relaxed, both: only this writer, under the lock, stores them.
        let leaf = if self.last_index.load(Ordering::Relaxed) == index {
            // SAFETY: the writer's last leaf, from `leaf_or_alloc`; it
            // holds versions at or past the stream's length, never freed.
            unsafe { &*self.last.load(Ordering::Relaxed) }
        } else {
            let leaf = self.leaf_or_alloc(index);
            self.last
                .store(ptr::from_ref(leaf).cast_mut(), Ordering::Relaxed);
            self.last_index.store(index, Ordering::Relaxed);
            leaf
        };
        &leaf[offset..]
    }

    /// Leaf `index`, allocated if need be (by the writer, under the lock).
    #[cold]
    fn leaf_or_alloc(&self, index: u64) -> &Leaf {
        let table = match self.table() {
            Some(table) => table,
            None => {
                let fresh = Box::into_raw(Box::new(Table::new()));
                // Release: pairs with the Acquire load in `table`. Only the
                // writer under the lock stores here, once.
                self.table.store(fresh, Ordering::Release);
                // SAFETY: just made, and kept until `self` drops.
                unsafe { &*fresh }
            }
        };
        let slot = table.get_or_alloc(index);
        // Relaxed: only this writer (under the lock) stores here, and a
        // version this writer writes is never freed.
        let mut leaf = slot.0.load(Ordering::Relaxed);
        if leaf.is_null() {
            let fresh: Box<[AtomicU64]> = (0..LEAF_LEN).map(|_| AtomicU64::new(0)).collect();
            let Ok(fresh): Result<Box<Leaf>, _> = fresh.try_into() else {
                // `LEAF_LEN` entries were collected: cannot fail.
                std::process::abort();
            };
            leaf = Box::into_raw(fresh);
            // Release: pairs with the Acquire load in `get`, publishing the
            // zeroed leaf; the positions written into it are published by
            // the stream's `len` (Release), as in the small array.
            slot.0.store(leaf, Ordering::Release);
            // Relaxed: read at drop only (with `&mut self`).
            self.leaves.fetch_max(index + 1, Ordering::Relaxed);
        }
        // SAFETY: non-null, from `Box::into_raw`, and not freed: versions
        // at or past the stream's length are never in a freed leaf.
        unsafe { &*leaf }
    }

    /// The position of recorded version `version`; `None` if its leaf was
    /// freed (the version was removed and counted, rule 30). The caller
    /// loaded the stream's length (Acquire) above `version`, or holds the
    /// lock.
    #[inline]
    pub(crate) fn get(&self, version: u64) -> Option<u64> {
        if version < HEAD_END {
            // Relaxed: published by the stream's `len` (see the caller).
            return self
                .head
                .get(version)
                .map(|slot| slot.load(Ordering::Relaxed));
        }
        let (leaf, offset) = leaf_of(version);
        let _guard = epoch::pin();
        let slot = self.table()?.get(leaf)?;
        // Acquire: pairs with the Release store in `leaf_or_alloc`; null
        // once freed (the swap in `free_below`), and then the guard keeps
        // nothing: it is not read.
        let leaf = slot.0.load(Ordering::Acquire);
        if leaf.is_null() {
            return None;
        }
        // SAFETY: loaded non-null under `_guard`: a leaf swapped out after
        // this load is freed only once the guard is gone.
        let leaf = unsafe { &*leaf };
        // Relaxed: as for the small array.
        Some(leaf[offset].load(Ordering::Relaxed))
    }

    /// The slots of versions `version..` up to the end of their small
    /// segment, for a reader that walks them across calls: only in the
    /// small array (never freed); `None` past it.
    #[inline]
    pub(crate) fn head_run(&self, version: u64) -> Option<&[AtomicU64]> {
        if version >= HEAD_END {
            return None;
        }
        let run = self.head.run(version)?;
        let left = (HEAD_END - version) as usize;
        Some(&run[..run.len().min(left)])
    }

    /// Frees the leaves wholly below version `keep` (every version below it
    /// was counted removed, and `keep`'s own leaf stays). Never panics and
    /// runs no user code.
    pub(crate) fn free_below(&self, keep: u64) {
        let Some(below) = keep
            .checked_sub(HEAD_END)
            .map(|within| within >> LEAF_SHIFT)
        else {
            return;
        };
        // Relaxed: a hint; the `fetch_max` decides.
        if below <= self.freed.load(Ordering::Relaxed) {
            return;
        }
        // Relaxed: the RMW alone makes the freers' ranges disjoint.
        let from = self.freed.fetch_max(below, Ordering::Relaxed);
        let Some(table) = self.table() else {
            return;
        };
        let guard = epoch::pin();
        for index in from..below {
            let Some(slot) = table.get(index) else {
                continue;
            };
            // SeqCst: a reader loads the pointer after pinning its epoch
            // (SeqCst in crossbeam-epoch); this swap precedes the deferral,
            // so one of the two sees the other.
            let leaf = slot.0.swap(ptr::null_mut(), Ordering::SeqCst);
            if !leaf.is_null() {
                guard.defer_drop(Freed(leaf));
            }
        }
    }
}

impl Drop for Positions {
    fn drop(&mut self) {
        let table = take(&mut self.table);
        if table.is_null() {
            return;
        }
        // SAFETY: from `Box::into_raw` in `leaf_or_alloc`, stored once;
        // `&mut self` means nobody else holds it.
        let table = unsafe { Box::from_raw(table) };
        // Relaxed: `&mut self` orders every write before this.
        let leaves = self.leaves.load(Ordering::Relaxed);
        for index in 0..leaves {
            if let Some(slot) = table.get(index) {
                // Relaxed: as above.
                let leaf = slot.0.swap(ptr::null_mut(), Ordering::Relaxed);
                if !leaf.is_null() {
                    // Not freed by `free_below` (which nulls what it frees).
                    drop(Freed(leaf));
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn record(positions: &Positions, versions: std::ops::Range<u64>) {
        let mut version = versions.start;
        while version < versions.end {
            for slot in positions.run_or_alloc(version) {
                if version == versions.end {
                    break;
                }
                slot.store(version * 10, Ordering::Relaxed);
                version += 1;
            }
        }
    }

    /// Positions read back across the small array and several leaves;
    /// freeing keeps the leaf of `keep` and everything after it, and frees
    /// whole leaves below it; Miri checks every leaf is freed once.
    #[test]
    fn leaves_below_the_kept_version_are_freed_and_the_rest_read_back() {
        let positions = Positions::new();
        let end = HEAD_END + 4 * LEAF_LEN as u64 + 3;
        record(&positions, 0..end);
        for version in (0..end).step_by(7) {
            assert_eq!(positions.get(version), Some(version * 10));
        }
        let keep = HEAD_END + 2 * LEAF_LEN as u64 + 5;
        positions.free_below(keep);
        // Freeing again, or less, does nothing more.
        positions.free_below(keep - 100);
        assert_eq!(positions.get(HEAD_END), None);
        assert_eq!(positions.get(keep - LEAF_LEN as u64), None);
        assert_eq!(positions.get(HEAD_END - 1), Some((HEAD_END - 1) * 10));
        assert_eq!(positions.get(keep - 5), Some((keep - 5) * 10));
        assert_eq!(positions.get(end - 1), Some((end - 1) * 10));
        assert!(positions.head_run(HEAD_END).is_none());
        assert_eq!(positions.head_run(HEAD_END - 1).map(<[_]>::len), Some(1));
    }
}
