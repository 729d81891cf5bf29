//! The stream index: for every stream, its lock and the positions of its
//! events.
//!
//! A stream's positions are appended only under its lock, in the same
//! critical section that reserves them in the log, so they are ascending and
//! stream order equals position order. Readers read them without the lock and
//! cut them at the watermark: a stream's committed events are a prefix of its
//! positions.

use crate::segments::Segments;
use crate::sync::{self, Arc, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::{Position, StreamHead, StreamId, StreamVersion};
#[cfg(not(loom))]
use std::hash::{BuildHasher, Hasher};

/// Slots in the first segment of a stream's positions: 4 outside loom, 2 under it.
#[cfg(not(loom))]
const STREAM_SHIFT: u32 = 2;
#[cfg(loom)]
const STREAM_SHIFT: u32 = 1;

pub(crate) struct Stream {
    /// Held by a writer from checking the stream's expectation until its
    /// positions are recorded.
    lock: Mutex<()>,
    /// How many positions are recorded (committed or not).
    len: AtomicU64,
    /// The global position of each of the stream's events, by version.
    positions: Segments<AtomicU64, STREAM_SHIFT>,
}

/// Proof that the holder may append to a stream.
pub(crate) struct Locked<'a> {
    stream: &'a Stream,
    _guard: MutexGuard<'a, ()>,
}

impl Stream {
    fn new() -> Self {
        Self {
            lock: Mutex::new(()),
            len: AtomicU64::new(0),
            positions: Segments::new(),
        }
    }

    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked {
            stream: self,
            _guard: sync::lock(&self.lock),
        }
    }

    /// The position of the event with version `version < len`.
    #[inline]
    fn position(&self, version: u64) -> u64 {
        // Relaxed: the caller read a `len` above `version` with Acquire (or
        // holds the lock), which orders this slot's Relaxed store before it.
        self.positions
            .get(version)
            .expect("recorded position has a segment")
            .load(Ordering::Relaxed)
    }

    /// How many of the stream's events lie below `watermark`: its committed
    /// length for a watermark loaded (with Acquire) before this call.
    #[inline]
    pub(crate) fn committed_len(&self, watermark: u64) -> u64 {
        // Acquire: pairs with the Release store in `Locked::append`, so the
        // positions below `len` are visible. Every committed event below
        // `watermark` is counted: its append happened before its commit,
        // which happened before the caller's watermark load.
        let mut len = self.len.load(Ordering::Acquire);
        // Uncommitted events sit at the end (positions ascend): at most one
        // per writer in flight on this stream.
        while len > 0 && self.position(len - 1) >= watermark {
            len -= 1;
        }
        len
    }

    /// The position of committed version `version` (`version <
    /// committed_len(..)`).
    #[inline]
    pub(crate) fn committed_position(&self, version: u64) -> u64 {
        self.position(version)
    }

    /// The stream's last committed event, below `watermark`.
    pub(crate) fn committed_head(&self, watermark: u64) -> Option<StreamHead> {
        let len = self.committed_len(watermark);
        (len > 0).then(|| StreamHead {
            version: StreamVersion(len - 1),
            position: Position(self.position(len - 1)),
        })
    }
}

impl Locked<'_> {
    /// The number of events recorded so far, committed or not: what a new
    /// transaction's expectation is checked against.
    pub(crate) fn len(&self) -> u64 {
        // Relaxed: only written under the lock we hold.
        self.stream.len.load(Ordering::Relaxed)
    }

    /// The last recorded event, committed or not.
    pub(crate) fn head(&self) -> Option<StreamHead> {
        let len = self.len();
        (len > 0).then(|| StreamHead {
            version: StreamVersion(len - 1),
            position: Position(self.stream.position(len - 1)),
        })
    }

    /// Records `count` events at positions `first..first + count`.
    ///
    /// Never panics (allocation failure aborts).
    pub(crate) fn append(&self, first: u64, count: u64) {
        let len = self.len();
        for i in 0..count {
            // Relaxed: published by the Release store of `len` below.
            self.stream
                .positions
                .get_or_alloc(len + i)
                .store(first + i, Ordering::Relaxed);
        }
        // Release: pairs with the Acquire load in `committed_len`.
        self.stream.len.store(len + count, Ordering::Release);
    }
}

/// Every stream that was ever written to (or tried to be).
pub(crate) struct StreamIndex {
    #[cfg(not(loom))]
    map: dashmap::DashMap<StreamId, Arc<Stream>, StreamIdHasher>,
    #[cfg(loom)]
    map: Mutex<std::collections::HashMap<StreamId, Arc<Stream>>>,
}

impl StreamIndex {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            map: dashmap::DashMap::with_hasher(StreamIdHasher),
            #[cfg(loom)]
            map: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The stream, if anything was ever appended to it (or tried to be).
    pub(crate) fn get(&self, id: StreamId) -> Option<Arc<Stream>> {
        // Clone the Arc and let the shard guard go at once: holding a dashmap
        // guard while locking another key can deadlock across shards.
        #[cfg(not(loom))]
        return self.map.get(&id).map(|entry| Arc::clone(entry.value()));
        #[cfg(loom)]
        return sync::lock(&self.map).get(&id).cloned();
    }

    /// The stream, created empty if need be.
    pub(crate) fn get_or_create(&self, id: StreamId) -> Arc<Stream> {
        if let Some(stream) = self.get(id) {
            return stream;
        }
        // As in `get`: the entry guard is dropped at the end of the statement.
        #[cfg(not(loom))]
        return Arc::clone(
            self.map
                .entry(id)
                .or_insert_with(|| Arc::new(Stream::new()))
                .value(),
        );
        #[cfg(loom)]
        return Arc::clone(
            sync::lock(&self.map)
                .entry(id)
                .or_insert_with(|| Arc::new(Stream::new())),
        );
    }
}

/// Hashes `StreamId`s: folds the 128 bits into one word, then runs
/// MurmurHash3's 64-bit finaliser over it, so that every input bit reaches
/// every output bit. Random ids need little mixing, but sequential ones
/// (`Uuid::from_u128(1)`, `(2)`, ... or `Uuid::from_u64_pair(k, i)`) differ
/// only in their last bytes, and both of the hash's consumers need those
/// differences spread: hashbrown picks buckets by the low bits and tags by
/// the top 7, dashmap picks shards by the bits below those.
#[cfg(not(loom))]
#[derive(Clone, Copy, Default)]
pub(crate) struct StreamIdHasher;

#[cfg(not(loom))]
impl BuildHasher for StreamIdHasher {
    type Hasher = FoldHasher;
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher(0)
    }
}

#[cfg(not(loom))]
pub(crate) struct FoldHasher(u64);

#[cfg(not(loom))]
impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        // For a fixed first word, distinct second words give distinct
        // states (xor, then a multiplication by an odd constant: both
        // bijections), so ids that differ only in their low half never
        // collide before the finaliser, which is a bijection too.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, _len: usize) {
        // The length prefix of the UUID's byte slice is always 16.
    }

    fn finish(&self) -> u64 {
        // MurmurHash3's fmix64.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[cfg(all(test, not(loom)))]
mod hasher_tests {
    use super::*;
    use std::collections::HashSet;
    use uuid::Uuid;

    fn hash(id: Uuid) -> u64 {
        StreamIdHasher.hash_one(StreamId::from_uuid(id))
    }

    /// How many distinct values `bits(hash)` takes over 4096 ids.
    fn spread(ids: impl Iterator<Item = Uuid>, bits: impl Fn(u64) -> u64) -> usize {
        ids.map(|id| bits(hash(id))).collect::<HashSet<_>>().len()
    }

    /// Sequential ids must spread over hashbrown's buckets (low bits), its
    /// tags (top 7 bits) and dashmap's shards (the bits below the tag): a
    /// hash that moved only high bits put 4096 such streams in one bucket
    /// and made every lookup a linear probe.
    #[test]
    fn sequential_stream_ids_spread_over_buckets_tags_and_shards() {
        type Family = (&'static str, fn(u64) -> Uuid);
        let families: [Family; 3] = [
            ("from_u128(i)", |i| Uuid::from_u128(i as u128)),
            ("from_u64_pair(k, i)", |i| {
                Uuid::from_u64_pair(0x6869_6e64, i)
            }),
            ("from_u64_pair(i, 0)", |i| Uuid::from_u64_pair(i, 0)),
        ];
        for (name, make) in families {
            // 4096 random values in 4096 buckets take about 2590 of them.
            let buckets = spread((0..4096).map(make), |h| h & 0xfff);
            assert!(buckets > 2400, "{name}: {buckets} of 4096 low-bit buckets");
            let tags = spread((0..4096).map(make), |h| h >> 57);
            assert!(tags > 120, "{name}: {tags} of 128 tags");
            let shards = spread((0..4096).map(make), |h| (h << 7) >> 58);
            assert!(shards > 60, "{name}: {shards} of 64 shards");
        }
    }
}
