//! An append-only array of slots in segments that grow geometrically, a
//! group of equal segments at a time.
//!
//! This is the layout of `boxcar` and of the "segmented vector" in the
//! literature on concurrent vectors (Dechev, Pirkelbauer and Stroustrup,
//! "Lock-free dynamically resizable arrays", 2006), with one change: segment
//! sizes double every `2^GROUP` segments instead of every segment. Group `g`
//! holds `2^GROUP` segments of `2^(SHIFT + g)` slots, so the slots allocated
//! but not yet used are at most one segment, `1 / 2^(GROUP + 1)` of the
//! array (1/16 for the log), where plain doubling wastes up to half. The
//! segment pointers sit in a fixed array, so a slot never moves once it
//! exists. Segments are allocated on first use and freed only when the whole
//! array drops. This type only hands out `&T`; what a slot means and who may
//! write it is up to the slot type.

use crate::sync::{AtomicPtr, Ordering};
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
pub(crate) const INDEX_BITS: u32 = 40;

/// The number of slots an array can hold.
pub(crate) const CAPACITY: u64 = 1 << INDEX_BITS;

/// Slots `0..CAPACITY` in groups of `2^GROUP` segments of `2^SHIFT`,
/// `2^(SHIFT+1)`, ... slots.
pub(crate) struct Segments<T: Slot, const SHIFT: u32, const GROUP: u32> {
    /// `segments[k]` is null or points to `capacity(k)` initialised slots.
    segments: Box<[AtomicPtr<T>]>,
    /// Owns the slots: `Segments<T>` is `Send`/`Sync` only where `T` is
    /// (raw pointers alone would make it both for every `T`).
    _slots: PhantomData<T>,
}

impl<T: Slot, const SHIFT: u32, const GROUP: u32> Segments<T, SHIFT, GROUP> {
    /// Slots in the first group: `2^GROUP` segments of `2^SHIFT` slots.
    const UNIT_SHIFT: u32 = SHIFT + GROUP;

    /// Segments needed for `CAPACITY` slots: group `g` ends at slot
    /// `2^UNIT_SHIFT * (2^(g+1) - 1)`, so groups `0..=INDEX_BITS -
    /// UNIT_SHIFT` cover `2^INDEX_BITS`.
    const SEGMENTS: usize = ((INDEX_BITS - Self::UNIT_SHIFT + 1) << GROUP) as usize;

    pub(crate) fn new() -> Self {
        let segments = (0..Self::SEGMENTS)
            .map(|_| AtomicPtr::new(ptr::null_mut()))
            .collect();
        Self {
            segments,
            _slots: PhantomData,
        }
    }

    /// The segment and the offset in it that hold slot `index < CAPACITY`.
    #[inline]
    fn locate(index: u64) -> (usize, usize) {
        debug_assert!(index < CAPACITY);
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
        1 << (SHIFT as usize + (segment >> GROUP))
    }

    /// The first slot of `segment`, if it has been allocated.
    #[inline]
    fn base(&self, segment: usize) -> Option<*mut T> {
        // Acquire: pairs with the AcqRel CAS in `install` that published the
        // segment, so its initialised slots are visible.
        let base = self.segments[segment].load(Ordering::Acquire);
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
        // SAFETY: a non-null pointer in `segments[segment]` points to
        // `capacity(segment)` initialised slots that stay put until `self`
        // drops, and `offset < capacity(segment)` by `locate`.
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
        let fresh = alloc_segment::<T>(Self::capacity(segment));
        // AcqRel on success: Release publishes the initialised slots to the
        // Acquire loads in `base`; Acquire on failure: takes the winner's
        // slots, published by its own successful Release CAS.
        match self.segments[segment].compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(winner) => {
                // SAFETY: `fresh` came from `alloc_segment` with this capacity
                // and was never shared: the CAS that would have shared it failed.
                unsafe { free_segment(fresh, Self::capacity(segment)) };
                winner
            }
        }
    }
}

impl<T: Slot, const SHIFT: u32, const GROUP: u32> Drop for Segments<T, SHIFT, GROUP> {
    fn drop(&mut self) {
        for (segment, pointer) in self.segments.iter_mut().enumerate() {
            #[cfg(not(loom))]
            let base = *pointer.get_mut();
            #[cfg(loom)]
            let base = pointer.with_mut(|p| *p);
            if !base.is_null() {
                // SAFETY: `&mut self` means no other reference to the slots
                // exists, and `base` was installed by `install` with exactly
                // this capacity.
                unsafe { free_segment(base, Self::capacity(segment)) };
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
    /// for plain doubling (`GROUP = 0`) and for groups of 4 and 8.
    fn fills_in_order<const SHIFT: u32, const GROUP: u32>() {
        let mut expected = (0usize, 0usize);
        // Fewer indexes under Miri, which interprets every instruction.
        for index in 0..if cfg!(miri) { 5_000 } else { 100_000u64 } {
            assert_eq!(Segments::<AtomicU64, SHIFT, GROUP>::locate(index), expected);
            expected.1 += 1;
            if expected.1 == Segments::<AtomicU64, SHIFT, GROUP>::capacity(expected.0) {
                expected = (expected.0 + 1, 0);
            }
        }
    }

    #[test]
    fn locate_fills_segments_in_order_without_gaps() {
        fills_in_order::<2, 0>();
        fills_in_order::<1, 2>();
        fills_in_order::<3, 3>();
    }

    /// The fixed table holds every index below `CAPACITY`, and no more.
    #[test]
    fn the_last_index_lands_in_the_last_segment() {
        fn last<const SHIFT: u32, const GROUP: u32>() {
            let (segment, offset) = Segments::<AtomicU64, SHIFT, GROUP>::locate(CAPACITY - 1);
            assert!(segment < Segments::<AtomicU64, SHIFT, GROUP>::SEGMENTS);
            assert!(offset < Segments::<AtomicU64, SHIFT, GROUP>::capacity(segment));
        }
        last::<10, 3>();
        last::<2, 0>();
        last::<1, 0>();
        let segments = Segments::<AtomicU64, 2, 0>::new();
        assert!(segments.get(CAPACITY).is_none());
        assert!(segments.run(u64::MAX).is_none());
    }

    #[test]
    fn slots_keep_their_values_and_addresses_as_segments_grow() {
        let segments = Segments::<AtomicU64, 1, 1>::new();
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
    fn racing_allocators_share_one_segment() {
        let segments = Segments::<AtomicU64, 3, 0>::new();
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
}
