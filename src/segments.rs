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

use crate::sync::{Arc, AtomicPtr, AtomicU64, Ordering, UnsafeCell};
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
#[cfg(not(any(loom, miri)))]
pub(crate) const INDEX_BITS: u32 = 40;
/// Under Miri, 2^32: the capped region's chunk table (2^(INDEX_BITS - MAX
/// - CHUNK_SHIFT) pointers, built with every array) stays small enough to
/// interpret.
#[cfg(all(miri, not(loom)))]
pub(crate) const INDEX_BITS: u32 = 32;
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
    /// array, so a masked index needs no bounds check. Null before the
    /// segment is allocated, and again once it is retired (see
    /// [`Segments::retire`]), for good: nobody allocates a segment again
    /// (only writers allocate, for positions they reserved, and a segment
    /// is retired only once all its positions are committed).
    entries: Box<[AtomicPtr<T>; CHUNK_LEN]>,
    /// The reclamation state of each of these segments, shared with the
    /// [`SegmentPin`]s that readers hold, so that a pin can be released
    /// whenever it drops.
    headers: Arc<Headers>,
    /// Zero-sized outside loom. Under loom the chunk is created inside
    /// `install_chunk` on the allocating thread, and every lookup reads this
    /// cell, so a chunk published without Release/Acquire is flagged.
    born: UnsafeCell<()>,
}

/// The reclamation state of `CHUNK_LEN` capped segments.
struct Headers(Box<[Header; CHUNK_LEN]>);

/// The reclamation state of one capped segment: how many of its events
/// were removed (contract rule 30), and who still reads it.
///
/// The protocol (DESIGN.md, "Reclaiming removed events"): each event of
/// the segment is counted into `removed` exactly once, once it is both
/// visible and removed from its stream; the count that reaches the
/// segment's capacity retires it. Retiring sets [`RETIRED`] in `pins`
/// (after which no pin succeeds), then swaps the segment's entry to null;
/// the memory is freed once `pins` counts nobody and every epoch guard
/// older than the swap is gone.
#[derive(Default)]
struct Header {
    /// Events of the segment removed and counted so far.
    removed: AtomicU64,
    /// The number of [`SegmentPin`]s held on the segment, with
    /// [`RETIRED`] set once it is retired.
    pins: AtomicU64,
}

/// The bit of [`Header::pins`] set when its segment is retired.
const RETIRED: u64 = 1 << 63;

/// A reader's hold on a capped segment: while it lives, the segment is not
/// freed. Taken by [`Segments::pin`]; released when dropped. `Send` and
/// `Sync`, unlike an epoch guard, so a subscription or a store handle can
/// keep one across calls and threads.
pub(crate) struct SegmentPin {
    headers: Arc<Headers>,
    index: usize,
}

impl Drop for SegmentPin {
    fn drop(&mut self) {
        // Release: pairs with the Acquire load in `Segments::unpinned`, so
        // that every read this pin protected happens before the free.
        self.headers.0[self.index]
            .pins
            .fetch_sub(1, Ordering::Release);
    }
}

impl Clone for SegmentPin {
    /// Another pin on the same segment: always succeeds, since this one
    /// keeps the segment from being freed (even once retired).
    fn clone(&self) -> Self {
        // Relaxed: as for `Arc::clone`: the count is above zero already,
        // and the free synchronises with each pin's Release `fetch_sub`.
        self.headers.0[self.index]
            .pins
            .fetch_add(1, Ordering::Relaxed);
        Self {
            headers: Arc::clone(&self.headers),
            index: self.index,
        }
    }
}

impl SegmentPin {
    /// Whether `other` pins the same segment.
    pub(crate) fn same_segment(&self, other: &SegmentPin) -> bool {
        Arc::ptr_eq(&self.headers, &other.headers) && self.index == other.index
    }
}

impl std::fmt::Debug for SegmentPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentPin")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// What [`Segments::pin`] found for a slot.
pub(crate) enum Hold<T> {
    /// A slot of the geometric region, or of an array that never caps:
    /// never freed while the array lives.
    Forever,
    /// A capped segment, pinned: its slots, indexes `start..end`, start at
    /// `base` and stay put while `pin` lives (even once the segment is
    /// retired and its entry null, so read them through `base`, not
    /// through another lookup).
    Pinned {
        pin: SegmentPin,
        base: *const T,
        start: u64,
        end: u64,
    },
    /// A capped segment that is retired (or was never allocated): none of
    /// its slots may be read. Its indexes end at `end`.
    Gone { end: u64 },
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

    /// Chunks the capped region needs: `2^(INDEX_BITS - MAX - CHUNK_SHIFT)`
    /// pointers, allocated with the array (1,024 for the log's `MAX` of 16;
    /// a small `MAX` outside loom would make this table huge).
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
        let chunk = self.chunk(capped)?;
        Some(&chunk.entries[capped % CHUNK_LEN])
    }

    /// The chunk that holds capped segment number `capped` (counted from
    /// the capped region's start), if it was allocated.
    #[inline]
    fn chunk(&self, capped: usize) -> Option<&Chunk<T>> {
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
        Some(chunk)
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

    /// The capped segment that holds `index`, if `index` lies in the
    /// capped region (never for an array that never caps).
    #[inline]
    pub(crate) fn capped_segment(index: u64) -> Option<usize> {
        (Self::CHUNKS > 0 && index >= Self::GEO_END && index < CAPACITY)
            .then(|| Self::locate(index).0)
    }

    /// The indexes of capped segment `segment`: `start..end`.
    #[inline]
    pub(crate) fn bounds(segment: usize) -> (u64, u64) {
        debug_assert!(Self::CHUNKS > 0 && segment >= Self::GEO_SEGMENTS);
        let start = Self::GEO_END + (((segment - Self::GEO_SEGMENTS) as u64) << MAX);
        (start, start + (1 << MAX))
    }

    /// The slots of capped segment `segment`: `2^MAX` of them.
    pub(crate) const SEGMENT_LEN: u64 = 1 << MAX;

    /// The first index of the capped region.
    #[cfg(test)]
    pub(crate) const CAPPED_START: u64 = Self::GEO_END;

    /// Which unit of reclamation holds `index`: 0 for the geometric region
    /// (never freed while the array lives), `1 + k` for capped segment `k`.
    /// Consecutive indexes have the same or the next unit.
    #[inline]
    pub(crate) fn unit(index: u64) -> u64 {
        match Self::capped_segment(index) {
            Some(segment) => 1 + (segment - Self::GEO_SEGMENTS) as u64,
            None => 0,
        }
    }

    /// The reclamation state of capped segment `segment`, with the shared
    /// block it lives in and its index there; `None` if its chunk was
    /// never allocated.
    #[inline]
    fn header(&self, segment: usize) -> Option<(&Arc<Headers>, usize)> {
        debug_assert!(Self::CHUNKS > 0 && segment >= Self::GEO_SEGMENTS);
        let capped = segment - Self::GEO_SEGMENTS;
        let chunk = self.chunk(capped)?;
        Some((&chunk.headers, capped % CHUNK_LEN))
    }

    /// Holds the segment of slot `index < CAPACITY` against being freed,
    /// for a reader that keeps references into it across calls: see
    /// [`Hold`].
    #[inline]
    pub(crate) fn pin(&self, index: u64) -> Hold<T> {
        let Some(segment) = Self::capped_segment(index) else {
            return Hold::Forever;
        };
        let (start, end) = Self::bounds(segment);
        let Some((headers, at)) = self.header(segment) else {
            return Hold::Gone { end };
        };
        // AcqRel: the Release half makes this pin part of the value that
        // `retire`'s RMW and `unpinned`'s load read (one modification
        // order: a pin either precedes `RETIRED`, and is counted, or sees
        // it); the Acquire half orders the reads below after it.
        let before = headers.0[at].pins.fetch_add(1, Ordering::AcqRel);
        let pin = SegmentPin {
            headers: Arc::clone(headers),
            index: at,
        };
        if before & RETIRED != 0 {
            // Dropping the pin takes the count back: it protected nothing.
            return Hold::Gone { end };
        }
        // Acquire: as in `base`. The pin precedes `RETIRED` in the pins'
        // modification order, so the slots are not freed before it drops;
        // the entry may still read null if `retire` swapped it since (then
        // the segment is gone all the same).
        match self
            .entry(segment)
            .map(|entry| entry.load(Ordering::Acquire))
        {
            Some(base) if !base.is_null() => Hold::Pinned {
                pin,
                base,
                start,
                end,
            },
            _ => Hold::Gone { end },
        }
    }

    /// Counts `n` more removed events in capped segment `segment`; `true`
    /// for the call whose count completes the segment (exactly one call
    /// per segment, if each event is counted once).
    #[inline]
    pub(crate) fn remove(&self, segment: usize, n: u64) -> bool {
        let Some((headers, at)) = self.header(segment) else {
            return false;
        };
        // AcqRel: the call that completes the count reads every earlier
        // call's increment in the RMW chain and synchronises with it.
        let before = headers.0[at].removed.fetch_add(n, Ordering::AcqRel);
        debug_assert!(before + n <= Self::SEGMENT_LEN);
        before + n == Self::SEGMENT_LEN
    }

    /// Retires capped segment `segment`: no pin succeeds from now on, and
    /// its entry is null; returns its slots, or null if it had none (never
    /// allocated, or retired already). The caller frees them with
    /// [`free`](Self::free) once [`unpinned`](Self::unpinned) and once
    /// every epoch guard that might have loaded the entry before the swap
    /// is gone.
    pub(crate) fn retire(&self, segment: usize) -> *mut T {
        let Some((headers, at)) = self.header(segment) else {
            return ptr::null_mut();
        };
        // AcqRel: after this RMW no `pin` succeeds (it reads `RETIRED`);
        // every pin before it is counted in the value `unpinned` reads.
        headers.0[at].pins.fetch_or(RETIRED, Ordering::AcqRel);
        match self.entry(segment) {
            // SeqCst: a guarded reader loads the entry after pinning its
            // epoch (crossbeam-epoch's SeqCst), and this swap comes before
            // the retirer defers the free: one of the two sees the other.
            Some(entry) => entry.swap(ptr::null_mut(), Ordering::SeqCst),
            None => ptr::null_mut(),
        }
    }

    /// Whether no [`SegmentPin`] holds retired segment `segment`.
    pub(crate) fn unpinned(&self, segment: usize) -> bool {
        match self.header(segment) {
            // Acquire: pairs with each pin's Release `fetch_sub`, so the
            // reads it protected happen before the caller frees the slots.
            Some((headers, at)) => headers.0[at].pins.load(Ordering::Acquire) & !RETIRED == 0,
            None => true,
        }
    }

    /// Frees the slots of capped segment `segment`, which [`retire`](Self::retire) returned.
    ///
    /// # Safety
    ///
    /// `base` came from `retire(segment)`, is freed once, and no reference
    /// into it is alive or will be made (the segment is unpinned and every
    /// epoch guard that could have loaded its entry is gone). The slots'
    /// contents were dropped by the caller if they need it.
    pub(crate) unsafe fn free(base: *mut T) {
        // SAFETY: the caller's contract; capped segments hold `2^MAX` slots.
        unsafe { free_segment(base, 1 << MAX) };
    }

    /// The slots of a segment [`retire`](Self::retire) returned, for the
    /// caller to drop what they hold before [`free`](Self::free).
    ///
    /// # Safety
    ///
    /// As for [`free`](Self::free), but for the slots' contents, which the
    /// caller may read and drop.
    pub(crate) unsafe fn retired_slots<'a>(base: *mut T) -> &'a [T] {
        // SAFETY: `base` points to `2^MAX` initialised slots nobody else
        // reads (the caller's contract).
        unsafe { std::slice::from_raw_parts(base, 1 << MAX) }
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
        let headers: Box<[Header]> = (0..CHUNK_LEN).map(|_| Header::default()).collect();
        let Ok(headers) = headers.try_into() else {
            // As above.
            std::process::abort();
        };
        let fresh = Box::into_raw(Box::new(Chunk {
            entries,
            headers: Arc::new(Headers(headers)),
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

/// Reads a pointer with `&mut` access to it (no other reference): a
/// segment's, a chunk's, or a stream's leaf table's (`positions.rs`).
pub(crate) fn take<P>(pointer: &mut AtomicPtr<P>) -> *mut P {
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
        assert_eq!(Log::CHUNKS, 1 << (INDEX_BITS - 16 - CHUNK_SHIFT));
        #[cfg(not(miri))]
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
        // A small `MAX` would make a huge chunk table (2^(40 - MAX - 14)
        // pointers): tests that build an array cap at 2^12 (16,384).
        let capped = Segments::<AtomicU64, 2, 0, 12>::new();
        assert!(capped.get(CAPACITY - 1).is_none());
        assert_eq!(
            capped.get_or_alloc(CAPACITY - 1) as *const AtomicU64,
            capped.get(CAPACITY - 1).unwrap() as *const AtomicU64
        );
        assert!(capped.get(CAPACITY).is_none());
        assert!(capped.run(u64::MAX).is_none());
    }

    /// Indexes at the start, around the end of the geometric region
    /// (16,380 with `SHIFT` 1, `GROUP` 1, `MAX` 12), and far out.
    fn keeps_values_and_addresses<const MAX: u32>() {
        type S<const C: u32> = Segments<AtomicU64, 1, 1, C>;
        let segments = S::<MAX>::new();
        let edge = S::<MAX>::GEO_END.min(1 << 14);
        let indexes = || (0..100u64).chain(edge - 50..edge + 50).chain([1 << 20]);
        let first = segments.get_or_alloc(0) as *const AtomicU64;
        for index in indexes() {
            segments
                .get_or_alloc(index)
                .store(index + 1, Ordering::Relaxed);
        }
        assert_eq!(first, segments.get(0).unwrap() as *const AtomicU64);
        for index in indexes() {
            assert_eq!(
                segments.get(index).unwrap().load(Ordering::Relaxed),
                index + 1
            );
        }
        assert!(segments.get(1 << 21).is_none());
        let run = segments.run_or_alloc(5);
        assert_eq!(run[0].load(Ordering::Relaxed), 6);
    }

    #[test]
    fn slots_keep_their_values_and_addresses_as_segments_grow() {
        keeps_values_and_addresses::<UNCAPPED>();
        keeps_values_and_addresses::<12>();
    }

    /// A run ends at its segment's end, which past the geometric groups is
    /// `2^MAX` slots on.
    #[test]
    fn runs_end_at_the_capped_segments_end() {
        let segments = Segments::<AtomicU64, 11, 0, 12>::new();
        // Geometric: 2,048 + 4,096 slots, then segments of 4,096.
        assert_eq!(segments.run_or_alloc(0).len(), 2048);
        assert_eq!(segments.run_or_alloc(2048).len(), 4096);
        assert_eq!(segments.run_or_alloc(6144).len(), 4096);
        assert_eq!(segments.run_or_alloc(6145).len(), 4095);
        assert_eq!(segments.run_or_alloc(10240).len(), 4096);
        assert!(segments.run(14336).is_none(), "never allocated");
    }

    /// Four threads allocate interleaved slots at the start and across the
    /// end of the geometric region (8,184 with `SHIFT` 3, `MAX` 12).
    fn racing_allocators<const MAX: u32>() {
        type S<const C: u32> = Segments<AtomicU64, 3, 0, C>;
        // Fewer slots under Miri, which interprets every instruction.
        let half = if cfg!(miri) { 16 } else { 256u64 };
        let edge = S::<MAX>::GEO_END.min(8184);
        let indexes = move || (0..2 * half).chain(edge - half..edge + half);
        let segments = S::<MAX>::new();
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let segments = &segments;
                scope.spawn(move || {
                    for index in indexes().skip(thread as usize).step_by(4) {
                        segments.get_or_alloc(index).store(index, Ordering::Relaxed);
                    }
                });
            }
        });
        for index in indexes() {
            assert_eq!(segments.get(index).unwrap().load(Ordering::Relaxed), index);
        }
    }

    #[test]
    fn racing_allocators_share_one_segment() {
        racing_allocators::<UNCAPPED>();
        racing_allocators::<12>();
    }
}
