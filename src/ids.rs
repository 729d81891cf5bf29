//! Identifiers, positions and versions.

use std::fmt;
use uuid::Uuid;

macro_rules! uuid_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        #[cfg_attr(feature = "serde", serde(transparent))]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

uuid_newtype! {
    /// Names a stream. Streams are laid out in a transaction in ascending
    /// `StreamId` order (the derived `Ord`, which is the UUID's byte order).
    ///
    /// ```
    /// use hindsight::StreamId;
    /// let a = StreamId::new();
    /// let b = StreamId::from_uuid(uuid::Uuid::from_u128(7));
    /// assert_ne!(a, b);
    /// assert_eq!(b.to_string(), "00000000-0000-0000-0000-000000000007");
    /// ```
    StreamId
}

uuid_newtype! {
    /// Names one stored event. The writer may give it
    /// ([`EventData::with_event_id`](crate::EventData::with_event_id), which
    /// makes re-sending the event idempotent: contract rule 29); otherwise
    /// the store assigns it when the event is inserted. Reading the event
    /// again always gives the same id.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// store.insert(Transaction::single(StreamId::new(), ExpectedVersion::Any, "x")).unwrap();
    /// let first = store.read_all(hindsight::Start::Beginning).next().unwrap().event_id();
    /// let again = store.read_all(hindsight::Start::Beginning).next().unwrap().event_id();
    /// assert_eq!(first, again);
    /// ```
    EventId
}

uuid_newtype! {
    /// Ties together the events of one transaction (and whatever caused it).
    ///
    /// ```
    /// use hindsight::CorrelationId;
    /// assert_ne!(CorrelationId::new(), CorrelationId::new());
    /// ```
    CorrelationId
}

uuid_newtype! {
    /// Names what caused one event: typically the id of the command or
    /// the event it was written in response to. Carried per event, in its
    /// [`Metadata`](crate::Metadata), where a [`CorrelationId`] is carried
    /// per transaction.
    ///
    /// ```
    /// use hindsight::{CausationId, EventId, Uuid};
    /// assert_ne!(CausationId::new(), CausationId::new());
    /// // An event caused by another: its id, as a causation id.
    /// let cause = EventId::from_uuid(Uuid::from_u128(7));
    /// assert_eq!(CausationId::from(cause).as_uuid(), cause.as_uuid());
    /// ```
    #[doc(alias = "$causationId")]
    CausationId
}

impl StreamId {
    /// A new random (version 4) stream id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// The namespace of [`from_name`](Self::from_name)'s version 5 UUIDs:
    /// `c32cb92e-f5d8-5de9-a48e-4a237f9467ba`, itself the version 5 UUID of
    /// the URL `https://docs.rs/hindsight/stream-names` (under RFC 9562's
    /// URL namespace). Fixed forever: another implementation that hashes
    /// names under it computes the same stream ids.
    ///
    /// ```
    /// use hindsight::{StreamId, Uuid};
    /// let derived = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://docs.rs/hindsight/stream-names");
    /// assert_eq!(StreamId::NAMESPACE, derived);
    /// ```
    pub const NAMESPACE: Uuid = Uuid::from_u128(0xc32c_b92e_f5d8_5de9_a48e_4a23_7f94_67ba);

    /// The stream id of the stream called `name`: the version 5 (SHA-1,
    /// name-based) UUID of `name`'s UTF-8 bytes under
    /// [`NAMESPACE`](Self::NAMESPACE). The same name gives the same id in
    /// every store, process and version of this crate, so a natural key
    /// ("order-42") can be the stream without a lookup table.
    ///
    /// Any text has an id, the empty string too; to have the store keep a
    /// name with its stream, check it with
    /// [`StreamName::new`](crate::StreamName::new) and append with
    /// [`Transaction::append_named`](crate::Transaction::append_named).
    ///
    /// ```
    /// use hindsight::StreamId;
    /// let id = StreamId::from_name("order-42");
    /// assert_eq!(id, StreamId::from_name("order-42"));
    /// assert_eq!(id.to_string(), "ef43bdfe-97b9-5894-9241-c2f6da76db3b");
    /// assert_eq!(id.as_uuid().get_version_num(), 5);
    /// ```
    #[doc(alias = "stream name")]
    pub fn from_name(name: &str) -> Self {
        Self(Uuid::new_v5(&Self::NAMESPACE, name.as_bytes()))
    }
}

impl Default for StreamId {
    fn default() -> Self {
        Self::new()
    }
}

impl CorrelationId {
    /// A new random (version 4) correlation id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for CorrelationId {
    fn default() -> Self {
        Self::new()
    }
}

impl CausationId {
    /// A new random (version 4) causation id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for CausationId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<EventId> for CausationId {
    /// The causation id of an event written in response to the event
    /// `id`.
    fn from(id: EventId) -> Self {
        Self(id.0)
    }
}

/// The event ids of one store: derived from each event's position, so they
/// cost no memory and no work at write time, and reading an event twice
/// gives the same id.
///
/// Ids are version 8 (custom) UUIDs: the high half is a random prefix drawn
/// once per store (58 random bits once version and variant are set), the low
/// half the event's position. They never repeat within a store, and repeat
/// across stores or processes only if two 58-bit random prefixes collide
/// (for a million stores, a chance of about 2 in 10^6).
#[derive(Debug)]
pub(crate) struct EventIds {
    prefix: u64,
}

impl EventIds {
    /// The ids of a new store: a fresh random prefix.
    pub(crate) fn new() -> Self {
        EventIds {
            prefix: Uuid::new_v4().as_u64_pair().0,
        }
    }

    /// The ids of a store built with a seed: the prefix is a fixed
    /// function of `seed` (SplitMix64's mix), so two stores built with one
    /// seed give the same event the same id.
    pub(crate) fn seeded(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        EventIds {
            prefix: z ^ (z >> 31),
        }
    }

    /// The id of the event at `position`.
    #[inline]
    pub(crate) fn id(&self, position: u64) -> EventId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.prefix.to_be_bytes());
        bytes[8..].copy_from_slice(&position.to_be_bytes());
        // `from_custom_bytes` overwrites the version and variant bits: 4 of
        // the prefix and the top 2 of the position, which stays below 2^40.
        EventId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }
}

macro_rules! number_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        #[cfg_attr(feature = "serde", serde(transparent))]
        pub struct $name(pub u64);

        impl $name {
            /// The number inside.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }

        impl From<$name> for u64 {
            fn from(value: $name) -> u64 {
                value.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

number_newtype! {
    /// An event's place in the store's one total order: 0 for the first event
    /// ever committed, then +1 per event, with no gaps and no reuse.
    ///
    /// ```
    /// use hindsight::Position;
    /// assert!(Position(3) < Position(4));
    /// assert_eq!(Position::from(5).get(), 5);
    /// ```
    Position
}

number_newtype! {
    /// An event's place in its stream: 0 for the stream's first event, then
    /// +1 per event of that stream.
    ///
    /// ```
    /// use hindsight::StreamVersion;
    /// assert_eq!(StreamVersion(0).get(), 0);
    /// ```
    StreamVersion
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_unique_within_and_across_stores() {
        let stores: Vec<EventIds> = (0..4).map(|_| EventIds::new()).collect();
        let mut ids: Vec<EventId> = stores
            .iter()
            .flat_map(|store| (0..10_000).map(|position| store.id(position)))
            .collect();
        let total = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), total);
        assert_eq!(ids[0].as_uuid().get_version_num(), 8);
        assert_eq!(stores[0].id(7), stores[0].id(7), "stable");
    }
}
