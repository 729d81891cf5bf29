//! An append-only array of slots in geometrically growing segments.
//!
//! This is the layout of `boxcar` and of the "segmented vector" in the
//! literature on concurrent vectors (Dechev, Pirkelbauer and Stroustrup,
//! "Lock-free dynamically resizable arrays", 2006): segment `k` holds
//! `BASE << k` slots, and the segment pointers sit in a fixed array, so a
//! slot never moves once it exists. Segments are allocated on first use and
//! freed only when the whole array drops. This type only hands out `&T`; what
//! a slot means and who may write it is up to the slot type.

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

/// The number of segment pointers: enough for `u64` indexes.
const fn segment_count(shift: u32) -> usize {
    (u64::BITS - shift) as usize
}

/// Slots `0..` in segments of `2^SHIFT`, `2^(SHIFT+1)`, ... slots.
pub(crate) struct Segments<T: Slot, const SHIFT: u32> {
    /// `segments[k]` is null or points to `BASE << k` initialised slots.
    segments: Box<[AtomicPtr<T>]>,
    /// Owns the slots: `Segments<T>` is `Send`/`Sync` only where `T` is
    /// (raw pointers alone would make it both for every `T`).
    _slots: PhantomData<T>,
}

impl<T: Slot, const SHIFT: u32> Segments<T, SHIFT> {
    /// Slots in segment 0.
    const BASE: u64 = 1 << SHIFT;

    pub(crate) fn new() -> Self {
        let segments = (0..segment_count(SHIFT))
            .map(|_| AtomicPtr::new(ptr::null_mut()))
            .collect();
        Self {
            segments,
            _slots: PhantomData,
        }
    }

    /// The segment and the offset in it that hold slot `index`.
    #[inline]
    fn locate(index: u64) -> (usize, usize) {
        // Slot `index` is slot `index + BASE` of an array whose segment k
        // starts at `BASE << k`: the segment is the highest set bit.
        let shifted = index + Self::BASE;
        let segment = (u64::BITS - 1 - shifted.leading_zeros() - SHIFT) as usize;
        let offset = (shifted - (Self::BASE << segment)) as usize;
        (segment, offset)
    }

    /// The number of slots in segment `segment`.
    #[inline]
    fn capacity(segment: usize) -> usize {
        (Self::BASE as usize) << segment
    }

    /// The slot at `index`, if its segment has been allocated.
    #[inline]
    pub(crate) fn get(&self, index: u64) -> Option<&T> {
        let (segment, offset) = Self::locate(index);
        // Acquire: pairs with the AcqRel CAS in `get_or_alloc` that published
        // the segment, so its initialised slots are visible.
        let base = self.segments[segment].load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        // SAFETY: a non-null pointer in `segments[segment]` points to
        // `capacity(segment)` initialised slots that stay put until `self`
        // drops, and `offset < capacity(segment)` by `locate`.
        Some(unsafe { &*base.add(offset) })
    }

    /// Slot `index` and the slots after it in the same segment, if that
    /// segment has been allocated: one lookup for a whole run of slots.
    #[inline]
    pub(crate) fn run(&self, index: u64) -> Option<&[T]> {
        let (segment, offset) = Self::locate(index);
        // Acquire: as in `get`.
        let base = self.segments[segment].load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        // SAFETY: as in `get`, `base` points to `capacity(segment)`
        // initialised slots that stay put until `self` drops, so the
        // `capacity(segment) - offset` slots from `offset` are in bounds.
        Some(unsafe {
            std::slice::from_raw_parts(base.add(offset), Self::capacity(segment) - offset)
        })
    }

    /// The slot at `index`, allocating its segment if need be.
    ///
    /// Never panics: an allocation failure aborts the process.
    #[inline]
    pub(crate) fn get_or_alloc(&self, index: u64) -> &T {
        let (segment, offset) = Self::locate(index);
        // Acquire: as in `get`.
        let mut base = self.segments[segment].load(Ordering::Acquire);
        if base.is_null() {
            base = self.install(segment);
        }
        // SAFETY: as in `get`; `install` never returns null.
        unsafe { &*base.add(offset) }
    }

    /// Allocates segment `segment` and races to install it.
    #[cold]
    fn install(&self, segment: usize) -> *mut T {
        let fresh = alloc_segment::<T>(Self::capacity(segment));
        // AcqRel on success: Release publishes the initialised slots to the
        // Acquire loads in `get`; Acquire on failure: takes the winner's
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

impl<T: Slot, const SHIFT: u32> Drop for Segments<T, SHIFT> {
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
        let Ok(layout) = std::alloc::Layout::array::<T>(len) else {
            // Only reachable past 2^60 slots: nothing sensible is left to do,
            // and a panic here could strand a reserved range.
            std::process::abort()
        };
        assert!(layout.size() > 0, "slots are never zero-sized");
        // SAFETY: the layout has a non-zero size (checked above).
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

    #[test]
    fn locate_fills_segments_in_order_without_gaps() {
        let mut expected = (0usize, 0usize);
        for index in 0..1000u64 {
            assert_eq!(Segments::<AtomicU64, 2>::locate(index), expected);
            expected.1 += 1;
            if expected.1 == Segments::<AtomicU64, 2>::capacity(expected.0) {
                expected = (expected.0 + 1, 0);
            }
        }
    }

    #[test]
    fn slots_keep_their_values_and_addresses_as_segments_grow() {
        let segments = Segments::<AtomicU64, 1>::new();
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
    }

    #[test]
    fn racing_allocators_share_one_segment() {
        let segments = Segments::<AtomicU64, 3>::new();
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
