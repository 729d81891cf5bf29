//! An append-only array of slots in segments that grow geometrically, a
//! group of equal segments at a time, up to a largest size.
//!
//! This is the layout of `boxcar` and of the "segmented vector" in the
//! literature on concurrent vectors (Dechev, Pirkelbauer and Stroustrup,
//! "Lock-free dynamically resizable arrays", 2006), with two changes.
//! Segment sizes double every `2^GROUP` segments instead of every segment:
//! group `g` holds `2^GROUP` segments of `2^(SHIFT + g)` slots, so the slots
//! allocated but not yet used are at most one segment, `1 / 2^(GROUP + 1)`
//! of the array (1/16 for the log), where plain doubling wastes up to half.
//! And sizes stop growing at `2^MAX` slots: past the geometric groups every
//! segment has `2^MAX` slots, so no single segment is proportional to
//! everything ever written (what freeing whole segments of removed events
//! needs for memory to stay flat). The geometric segments' pointers sit in a
//! fixed array; the capped segments' pointers sit in chunks of
//! `2^CHUNK_SHIFT`, allocated on first use and reached through a second
//! fixed array, so an array that never passes the geometric groups pays a
//! few pointers for the capped region and nothing more. A slot never moves
//! once it exists. Segments and chunks are allocated on first use and freed
//! only when the whole array drops. This type only hands out `&T`; what a
//! slot means and who may write it is up to the slot type.

use crate::sync::{AtomicPtr, Ordering, UnsafeCell};
use std::marker::PhantomData;
use std::ptr;

/// A slot type that `Segments` can allocate in bulk.
///
/// # Safety
///
/// Outside loom, segments are allocated with `alloc_zeroed`: the all-zero bit
/// pattern must be a valid value of `Self`, equal to `Self::default()`.
pub(crate) unsafe trait Slot: Default {}

// SAFETY: an all-zero `AtomicU64` is `AtomicU64::new(0)`, its default.
unsafe impl Slot for crate::sync::AtomicU64 {}

/// Indexes below `2^INDEX_BITS` have a slot: about 1.1 trillion, more than
/// any machine's memory holds (the log's slots are at least 32 bytes).
#[cfg(not(loom))]
pub(crate) const INDEX_BITS: u32 = 40;
/// Under loom, 256 slots: every model writes far fewer, and the capped
/// region's chunk table stays a handful of loom atomics.
#[cfg(loom)]
pub(crate) const INDEX_BITS: u32 = 8;

/// The number of slots an array can hold.
pub(crate) const CAPACITY: u64 = 1 << INDEX_BITS;

/// A `MAX` that never caps: segments keep doubling up to `CAPACITY`.
pub(crate) const UNCAPPED: u32 = INDEX_BITS;

/// Capped segments' pointers per chunk: 2^14 (128 KiB, one per 2^30 log
/// slots), 2^3 under loom.
#[cfg(not(loom))]
const CHUNK_SHIFT: u32 = 14;
#[cfg(loom)]
const CHUNK_SHIFT: u32 = 3;

/// Capped segments' pointers per chunk.
const CHUNK_LEN: usize = 1 << CHUNK_SHIFT;

/// The pointers of `2^CHUNK_SHIFT` capped segments.
struct Chunk<T> {
    /// `entries[i]` is null or points to `2^MAX` initialised slots. An
    /// array, so a masked index needs no bounds check.
    entries: Box<[AtomicPtr<T>; CHUNK_LEN]>,
    /// Zero-sized outside loom. Under loom the chunk is created inside
    /// `install_chunk` on the allocating thread, and every lookup reads this
    /// cell, so a chunk published without Release/Acquire is flagged.
    born: UnsafeCell<()>,
}

/// Slots `0..CAPACITY` in groups of `2^GROUP` segments of `2^SHIFT`,
/// `2^(SHIFT+1)`, ... slots, up to segments of `2^MAX` slots, then segments
/// of `2^MAX` slots only.
pub(crate) struct Segments<T: Slot, const SHIFT: u32, const GROUP: u32, const MAX: u32> {
    /// The geometric region: `segments[k]` is null or points to
    /// `capacity(k)` initialised slots.
    segments: Box<[AtomicPtr<T>]>,
    /// The capped region: `chunks[j]` is null or points to the chunk that
    /// holds the pointers of capped segments `j * 2^CHUNK_SHIFT ..`.
    chunks: Box<[AtomicPtr<Chunk<T>>]>,
    /// Owns the slots: `Segments<T>` is `Send`/`Sync` only where `T` is
    /// (raw pointers alone would make it both for every `T`).
    _slots: PhantomData<T>,
}

impl<T: Slot, const SHIFT: u32, const GROUP: u32, const MAX: u32> Segments<T, SHIFT, GROUP, MAX> {
    /// Slots in the first group: `2^GROUP` segments of `2^SHIFT` slots.
    const UNIT_SHIFT: u32 = SHIFT + GROUP;

    /// Geometric groups: up to the one of `2^MAX`-slot segments, or as many
    /// as `CAPACITY` needs: group `g` ends at slot
    /// `2^UNIT_SHIFT * (2^(g+1) - 1)`, so groups `0..=INDEX_BITS -
    /// UNIT_SHIFT` cover `2^INDEX_BITS`. A `MAX` below `SHIFT`, or a
    /// `UNIT_SHIFT` above `INDEX_BITS`, fails to compile (the subtractions
    /// overflow in const evaluation).
    const GEO_GROUPS: u32 = {
        let capped = MAX - SHIFT + 1;
        let needed = INDEX_BITS - Self::UNIT_SHIFT + 1;
        if capped < needed {
            capped
        } else {
            needed
        }
    };

    /// Segments in the geometric region.
    const GEO_SEGMENTS: usize = (Self::GEO_GROUPS << GROUP) as usize;

    /// The first index past the geometric region (at or past `CAPACITY`
    /// when the array never caps).
    const GEO_END: u64 = ((1 << Self::GEO_GROUPS) - 1) << Self::UNIT_SHIFT;

    /// Segments in the capped region.
    const CAPPED_SEGMENTS: u64 = if Self::GEO_END >= CAPACITY {
        0
    } else {
        (CAPACITY - Self::GEO_END).div_ceil(1 << MAX)
    };

    /// Chunks the capped region needs.
    const CHUNKS: usize = Self::CAPPED_SEGMENTS.div_ceil(1 << CHUNK_SHIFT) as usize;

    pub(crate) fn new() -> Self {
        Self {
            segments: (0..Self::GEO_SEGMENTS)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
            chunks: (0..Self::CHUNKS)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
            _slots: PhantomData,
        }
    }

    /// The segment and the offset in it that hold slot `index < CAPACITY`.
    /// Segments are numbered geometric first, then capped.
    #[inline]
    fn locate(index: u64) -> (usize, usize) {
        debug_assert!(index < CAPACITY);
        // `CHUNKS > 0` is a constant: an uncapped array (a stream's
        // positions) compiles without this branch.
        if Self::CHUNKS > 0 && index >= Self::GEO_END {
            let within = index - Self::GEO_END;
            let segment = Self::GEO_SEGMENTS + (within >> MAX) as usize;
            return (segment, (within & ((1 << MAX) - 1)) as usize);
        }
        // Slot `index` is slot `index + 2^UNIT_SHIFT` of an array whose
        // group g starts at `2^(UNIT_SHIFT + g)`: the group is the highest
        // set bit above UNIT_SHIFT.
        let shifted = index + (1 << Self::UNIT_SHIFT);
        let group = u64::BITS - 1 - shifted.leading_zeros() - Self::UNIT_SHIFT;
        let within = shifted - (1 << (Self::UNIT_SHIFT + group));
        let size_shift = SHIFT + group;
        let segment = ((group as usize) << GROUP) + (within >> size_shift) as usize;
        let offset = (within & ((1 << size_shift) - 1)) as usize;
        (segment, offset)
    }

    /// The number of slots in segment `segment`.
    #[inline]
    fn capacity(segment: usize) -> usize {
        if Self::CHUNKS > 0 && segment >= Self::GEO_SEGMENTS {
            1 << MAX
        } else {
            1 << (SHIFT as usize + (segment >> GROUP))
        }
    }

    /// The pointer of segment `segment`, if the chunk that holds it exists
    /// (always, for a geometric segment).
    #[inline]
    fn entry(&self, segment: usize) -> Option<&AtomicPtr<T>> {
        if Self::CHUNKS == 0 || segment < Self::GEO_SEGMENTS {
            return Some(&self.segments[segment]);
        }
        let capped = segment - Self::GEO_SEGMENTS;
        // Acquire: pairs with the AcqRel CAS in `install_chunk` that
        // published the chunk, so its initialised entries are visible.
        let chunk = self.chunks[capped >> CHUNK_SHIFT].load(Ordering::Acquire);
        if chunk.is_null() {
            return None;
        }
        // SAFETY: a non-null pointer in `chunks` points to a chunk made by
        // `install_chunk`, which stays put until `self` drops.
        let chunk = unsafe { &*chunk };
        chunk.born.with(|_| ());
        Some(&chunk.entries[capped % CHUNK_LEN])
    }

    /// The pointer of segment `segment`, allocating its chunk if need be.
    #[inline]
    fn entry_or_alloc(&self, segment: usize) -> &AtomicPtr<T> {
        match self.entry(segment) {
            Some(entry) => entry,
            None => self.install_chunk(segment),
        }
    }

    /// The first slot of `segment`, if it has been allocated.
    #[inline]
    fn base(&self, segment: usize) -> Option<*mut T> {
        // Acquire: pairs with the AcqRel CAS in `install` that published the
        // segment, so its initialised slots are visible.
        let base = self.entry(segment)?.load(Ordering::Acquire);
        (!base.is_null()).then_some(base)
    }

    /// The slot at `index`, if its segment has been allocated (never for
    /// `index >= CAPACITY`).
    #[inline]
    pub(crate) fn get(&self, index: u64) -> Option<&T> {
        if index >= CAPACITY {
            return None;
        }
        let (segment, offset) = Self::locate(index);
        let base = self.base(segment)?;
        // SAFETY: a non-null segment pointer points to `capacity(segment)`
        // initialised slots that stay put until `self` drops, and
        // `offset < capacity(segment)` by `locate`.
        Some(unsafe { &*base.add(offset) })
    }

    /// Slot `index` and the slots after it in the same segment, if that
    /// segment has been allocated: one lookup for a whole run of slots.
    #[inline]
    pub(crate) fn run(&self, index: u64) -> Option<&[T]> {
        if index >= CAPACITY {
            return None;
        }
        let (segment, offset) = Self::locate(index);
        let base = self.base(segment)?;
        // SAFETY: as in `get`, `base` points to `capacity(segment)`
        // initialised slots that stay put until `self` drops, so the
        // `capacity(segment) - offset` slots from `offset` are in bounds.
        Some(unsafe {
            std::slice::from_raw_parts(base.add(offset), Self::capacity(segment) - offset)
        })
    }

    /// Slot `index < CAPACITY` and the slots after it in the same segment,
    /// allocating the segment if need be.
    ///
    /// Never panics: an allocation failure aborts the process.
    #[inline]
    pub(crate) fn run_or_alloc(&self, index: u64) -> &[T] {
        let (segment, offset) = Self::locate(index);
        let base = match self.base(segment) {
            Some(base) => base,
            None => self.install(segment),
        };
        // SAFETY: as in `run`; `install` never returns null.
        unsafe { std::slice::from_raw_parts(base.add(offset), Self::capacity(segment) - offset) }
    }

    /// The slot at `index < CAPACITY`, allocating its segment if need be.
    ///
    /// Never panics: an allocation failure aborts the process.
    #[inline]
    pub(crate) fn get_or_alloc(&self, index: u64) -> &T {
        let (segment, offset) = Self::locate(index);
        let base = match self.base(segment) {
            Some(base) => base,
            None => self.install(segment),
        };
        // SAFETY: as in `get`; `install` never returns null.
        unsafe { &*base.add(offset) }
    }

    /// Allocates segment `segment` and races to install it.
    #[cold]
    fn install(&self, segment: usize) -> *mut T {
        let entry = self.entry_or_alloc(segment);
        let fresh = alloc_segment::<T>(Self::capacity(segment));
        // AcqRel on success: Release publishes the initialised slots to the
        // Acquire loads in `base`; Acquire on failure: takes the winner's
        // slots, published by its own successful Release CAS.
        match entry.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(winner) => {
                // SAFETY: `fresh` came from `alloc_segment` with this capacity
                // and was never shared: the CAS that would have shared it failed.
                unsafe { free_segment(fresh, Self::capacity(segment)) };
                winner
            }
        }
    }

    /// Allocates the chunk that holds capped segment `segment`'s pointer and
    /// races to install it; the pointer.
    #[cold]
    fn install_chunk(&self, segment: usize) -> &AtomicPtr<T> {
        let capped = segment - Self::GEO_SEGMENTS;
        let entries: Box<[AtomicPtr<T>]> = (0..CHUNK_LEN)
            .map(|_| AtomicPtr::new(ptr::null_mut()))
            .collect();
        let Ok(entries) = entries.try_into() else {
            // `CHUNK_LEN` entries were collected: the conversion cannot fail.
            std::process::abort();
        };
        let fresh = Box::into_raw(Box::new(Chunk {
            entries,
            born: UnsafeCell::new(()),
        }));
        // AcqRel on success: Release publishes the chunk's null entries to
        // the Acquire loads in `entry`; Acquire on failure: takes the
        // winner's chunk, published by its own successful Release CAS.
        let chunk = match self.chunks[capped >> CHUNK_SHIFT].compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(winner) => {
                // SAFETY: `fresh` came from `Box::into_raw` just above and
                // was never shared: the CAS that would have shared it failed.
                drop(unsafe { Box::from_raw(fresh) });
                winner
            }
        };
        // SAFETY: `chunk` is non-null and was made by this function; chunks
        // stay put until `self` drops.
        let chunk = unsafe { &*chunk };
        chunk.born.with(|_| ());
        &chunk.entries[capped % CHUNK_LEN]
    }
}

/// Reads a segment pointer with `&mut` access to it (no other reference).
fn take<P>(pointer: &mut AtomicPtr<P>) -> *mut P {
    #[cfg(not(loom))]
    let base = *pointer.get_mut();
    #[cfg(loom)]
    let base = pointer.with_mut(|p| *p);
    base
}

impl<T: Slot, const SHIFT: u32, const GROUP: u32, const MAX: u32> Drop
    for Segments<T, SHIFT, GROUP, MAX>
{
    fn drop(&mut self) {
        for (segment, pointer) in self.segments.iter_mut().enumerate() {
            let base = take(pointer);
            if !base.is_null() {
                // SAFETY: `&mut self` means no other reference to the slots
                // exists, and `base` was installed by `install` with exactly
                // this capacity.
                unsafe { free_segment(base, Self::capacity(segment)) };
            }
        }
        for pointer in self.chunks.iter_mut() {
            let chunk = take(pointer);
            if chunk.is_null() {
                continue;
            }
            // SAFETY: `chunk` was made by `Box::into_raw` in `install_chunk`
            // and installed once; `&mut self` means nobody else holds it.
            let mut chunk = unsafe { Box::from_raw(chunk) };
            for entry in chunk.entries.iter_mut() {
                let base = take(entry);
                if !base.is_null() {
                    // SAFETY: as above; capped segments hold `2^MAX` slots.
                    unsafe { free_segment(base, 1 << MAX) };
                }
            }
        }
    }
}

/// Allocates `len` default slots. Aborts instead of panicking on failure.
fn alloc_segment<T: Slot>(len: usize) -> *mut T {
    #[cfg(not(loom))]
    {
        let layout = match std::alloc::Layout::array::<T>(len) {
            // Slots are never zero-sized (the log's and the stream index's
            // all hold an atomic), so the layout has a non-zero size.
            Ok(layout) if layout.size() > 0 => layout,
            // Only reachable past 2^60 bytes: nothing sensible is left to
            // do, and a panic here could strand a reserved range.
            _ => std::process::abort(),
        };
        // SAFETY: the layout has a non-zero size (matched above).
        let base = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
        if base.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // All-zero slots are valid `T::default()` values by the `Slot`
        // contract, so the segment is fully initialised.
        base
    }
    #[cfg(loom)]
    {
        let slots: Box<[T]> = (0..len).map(|_| T::default()).collect();
        Box::into_raw(slots).cast::<T>()
    }
}

/// Drops and frees a segment made by `alloc_segment`.
///
/// # Safety
///
/// `base` came from `alloc_segment::<T>(len)`, is freed only once, and no
/// reference into it outlives this call.
unsafe fn free_segment<T: Slot>(base: *mut T, len: usize) {
    // SAFETY: `alloc_segment` made `len` initialised slots with the layout of
    // `[T; len]` (`Layout::array`, or a boxed slice under loom), which is the
    // layout `Box<[T]>` frees with; the caller gives up the segment.
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(base, len)) });
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::AtomicU64;

    /// `locate` walks every segment in order, each filled to its capacity,
    /// for plain doubling (`GROUP = 0`), groups of 4 and 8, and with and
    /// without a largest size.
    fn fills_in_order<const SHIFT: u32, const GROUP: u32, const MAX: u32>() {
        type S<const A: u32, const B: u32, const C: u32> = Segments<AtomicU64, A, B, C>;
        let mut expected = (0usize, 0usize);
        // Fewer indexes under Miri, which interprets every instruction.
        for index in 0..if cfg!(miri) { 5_000 } else { 100_000u64 } {
            assert_eq!(S::<SHIFT, GROUP, MAX>::locate(index), expected);
            expected.1 += 1;
            if expected.1 == S::<SHIFT, GROUP, MAX>::capacity(expected.0) {
                expected = (expected.0 + 1, 0);
            }
        }
    }

    #[test]
    fn locate_fills_segments_in_order_without_gaps() {
        fills_in_order::<2, 0, UNCAPPED>();
        fills_in_order::<1, 2, UNCAPPED>();
        fills_in_order::<3, 3, UNCAPPED>();
        fills_in_order::<2, 0, 4>();
        fills_in_order::<1, 2, 3>();
        fills_in_order::<3, 3, 3>();
        fills_in_order::<10, 3, 12>();
    }

    /// Past the geometric groups every segment has `2^MAX` slots, so the
    /// largest segment of a log of a billion events is the cap, not a
    /// sixteenth of the log.
    #[test]
    fn segments_stop_growing_at_the_cap() {
        type Log = Segments<AtomicU64, 10, 3, 16>;
        assert_eq!(Log::GEO_END, 127 << 13);
        let (segment, _) = Log::locate(1 << 30);
        assert_eq!(Log::capacity(segment), 1 << 16);
        assert_eq!(Log::capacity(Log::locate(Log::GEO_END - 1).0), 1 << 16);
        assert_eq!(Log::capacity(Log::locate(CAPACITY - 1).0), 1 << 16);
        // 7 groups of 8 pointers, and 1,024 chunk pointers (8 KiB) for the
        // capped region.
        assert_eq!(Log::GEO_SEGMENTS, 56);
        assert_eq!(Log::CHUNKS, 1024);
        // An uncapped array has no capped region.
        type Stream = Segments<AtomicU64, 2, 0, UNCAPPED>;
        assert_eq!(Stream::CHUNKS, 0);
        const { assert!(Stream::GEO_END >= CAPACITY) };
    }

    /// The fixed tables hold every index below `CAPACITY`, and no more.
    #[test]
    fn the_last_index_lands_in_the_last_segment() {
        fn last<const SHIFT: u32, const GROUP: u32, const MAX: u32>() {
            type S<const A: u32, const B: u32, const C: u32> = Segments<AtomicU64, A, B, C>;
            let (segment, offset) = S::<SHIFT, GROUP, MAX>::locate(CAPACITY - 1);
            let segments = S::<SHIFT, GROUP, MAX>::GEO_SEGMENTS
                + (S::<SHIFT, GROUP, MAX>::CHUNKS << CHUNK_SHIFT);
            assert!(segment < segments);
            assert!(offset < S::<SHIFT, GROUP, MAX>::capacity(segment));
        }
        last::<10, 3, UNCAPPED>();
        last::<10, 3, 16>();
        last::<2, 0, UNCAPPED>();
        last::<1, 0, UNCAPPED>();
        last::<1, 0, 2>();
        let segments = Segments::<AtomicU64, 2, 0, UNCAPPED>::new();
        assert!(segments.get(CAPACITY).is_none());
        assert!(segments.run(u64::MAX).is_none());
        let capped = Segments::<AtomicU64, 2, 0, 3>::new();
        assert!(capped.get(CAPACITY - 1).is_none());
        assert_eq!(
            capped.get_or_alloc(CAPACITY - 1) as *const AtomicU64,
            capped.get(CAPACITY - 1).unwrap() as *const AtomicU64
        );
        assert!(capped.get(CAPACITY).is_none());
        assert!(capped.run(u64::MAX).is_none());
    }

    fn keeps_values_and_addresses<const MAX: u32>() {
        let segments = Segments::<AtomicU64, 1, 1, MAX>::new();
        let first = segments.get_or_alloc(0) as *const AtomicU64;
        for index in 0..300u64 {
            segments
                .get_or_alloc(index)
                .store(index + 1, Ordering::Relaxed);
        }
        assert_eq!(first, segments.get(0).unwrap() as *const AtomicU64);
        for index in 0..300u64 {
            assert_eq!(
                segments.get(index).unwrap().load(Ordering::Relaxed),
                index + 1
            );
        }
        assert!(segments.get(1 << 20).is_none());
        let run = segments.run_or_alloc(5);
        assert_eq!(run[0].load(Ordering::Relaxed), 6);
    }

    #[test]
    fn slots_keep_their_values_and_addresses_as_segments_grow() {
        keeps_values_and_addresses::<UNCAPPED>();
        keeps_values_and_addresses::<3>();
    }

    /// A run ends at its segment's end, which past the geometric groups is
    /// `2^MAX` slots on.
    #[test]
    fn runs_end_at_the_capped_segments_end() {
        let segments = Segments::<AtomicU64, 1, 0, 2>::new();
        // Geometric: 2 + 4 slots, then segments of 4.
        assert_eq!(segments.run_or_alloc(0).len(), 2);
        assert_eq!(segments.run_or_alloc(2).len(), 4);
        assert_eq!(segments.run_or_alloc(6).len(), 4);
        assert_eq!(segments.run_or_alloc(7).len(), 3);
        assert_eq!(segments.run_or_alloc(10).len(), 4);
        assert!(segments.run(14).is_none(), "never allocated");
    }

    fn racing_allocators<const MAX: u32>() {
        let segments = Segments::<AtomicU64, 3, 0, MAX>::new();
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let segments = &segments;
                scope.spawn(move || {
                    for index in (thread..512).step_by(4) {
                        segments.get_or_alloc(index).store(index, Ordering::Relaxed);
                    }
                });
            }
        });
        for index in 0..512u64 {
            assert_eq!(segments.get(index).unwrap().load(Ordering::Relaxed), index);
        }
    }

    #[test]
    fn racing_allocators_share_one_segment() {
        racing_allocators::<UNCAPPED>();
        racing_allocators::<4>();
    }
}
