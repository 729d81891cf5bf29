//! Recording what the code under test wrote: a [`Mark`] taken at a store's
//! head, and the events [`Written`] after it.

use super::diff;
use crate::backend::{Cursor, EventRef, EventStore};
use crate::ids::{CorrelationId, Position, StreamId, StreamVersion};
use std::fmt;
use std::ops::ControlFlow;

/// A place in a store's global order, taken before the code under test
/// runs: [`written`](Mark::written) then returns every event committed
/// after it, and nothing from before (the `given` history).
///
/// Works on any [`EventStore`]; it holds a handle onto the store (a clone).
/// Everything committed after the mark is recorded, whoever wrote it: a
/// test that runs other writers at the same time sees their events too.
///
/// ```
/// use hindsight::testkit::Mark;
/// use hindsight::{EventStore, ExpectedVersion, MemoryStore, Position, StreamId, Transaction};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let order = StreamId::new();
/// EventStore::insert(&store, Transaction::single(order, ExpectedVersion::NoStream, "placed")).await?;
///
/// let mark = Mark::take(&store).await?;
/// assert_eq!(mark.position(), Some(Position(0)));
/// // The code under test:
/// EventStore::insert(&store, Transaction::single(order, ExpectedVersion::StreamExists, "paid")).await?;
///
/// let written = mark.written().await?;
/// written.assert_events(order, ["paid"]); // "placed" was before the mark
/// # Ok(()) }
/// ```
pub struct Mark<S: EventStore> {
    store: S,
    at: Option<S::Cursor>,
}

impl<S: EventStore> Mark<S> {
    /// A mark at `store`'s head now: the cursor of its last committed
    /// event, or the beginning for an empty store.
    ///
    /// # Errors
    ///
    /// The backend's error if reading the head fails.
    pub async fn take(store: &S) -> Result<Self, S::Error> {
        let at = store.head().await?;
        Ok(Mark {
            store: store.clone(),
            at,
        })
    }

    /// The position of the store's last event when the mark was taken;
    /// `None` if the store was empty. Events written since have greater
    /// positions.
    pub fn position(&self) -> Option<Position> {
        self.at.map(Cursor::position)
    }

    /// Every event committed after the mark, in position order, copied out
    /// of the store (one `read_all` from the mark, as the store is when it
    /// starts). Call it again to see later writes too.
    ///
    /// # Errors
    ///
    /// The backend's error if the read fails.
    pub async fn written(&self) -> Result<Written<S::Event>, S::Error>
    where
        S::Event: Clone,
    {
        let mut events = Vec::new();
        let copy = |event: EventRef<'_, S::Event, S::Cursor>| {
            events.push(WrittenEvent {
                position: event.position(),
                stream: event.stream,
                version: event.version,
                correlation_id: event.correlation_id,
                event: event.payload.clone(),
            });
            ControlFlow::Continue(())
        };
        self.store.read_all(self.at, copy).await?;
        Ok(Written {
            after: self.position(),
            events,
        })
    }
}

impl<S: EventStore> fmt::Debug for Mark<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mark")
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

/// One event written since a [`Mark`]: where it landed, and a copy of it.
///
/// ```
/// use hindsight::testkit::WrittenEvent;
/// use hindsight::{Position, StreamId, StreamVersion};
/// let event = WrittenEvent {
///     position: Position(3),
///     stream: StreamId::new(),
///     version: StreamVersion(0),
///     correlation_id: None,
///     event: "opened",
/// };
/// assert_eq!(event.clone(), event);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenEvent<E> {
    /// Its place in the store's global order.
    pub position: Position,
    /// Its stream.
    pub stream: StreamId,
    /// Its version in its stream.
    pub version: StreamVersion,
    /// The correlation id of the transaction that wrote it.
    pub correlation_id: Option<CorrelationId>,
    /// The event.
    pub event: E,
}

/// The events committed after a [`Mark`], in position order: what the code
/// under test wrote. Returned by [`Mark::written`], and kept by a scenario's
/// [`Outcome`](super::Outcome).
///
/// ```
/// use hindsight::testkit::Mark;
/// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StreamId, Transaction};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let mark = Mark::take(&store).await?;
/// let (a, b) = (StreamId::new(), StreamId::new());
/// let tx = Transaction::new()
///     .append(a, ExpectedVersion::NoStream, [1, 2])
///     .append(b, ExpectedVersion::NoStream, [3]);
/// EventStore::insert(&store, tx).await?;
///
/// let written = mark.written().await?;
/// assert_eq!(written.len(), 3);
/// assert_eq!(written.streams().len(), 2);
/// assert_eq!(written.stream(b).map(|e| e.event).collect::<Vec<_>>(), [3]);
/// assert_eq!(written.head(), Some(hindsight::Position(2)));
/// written.assert_events(a, [1, 2]).assert_events(b, [3]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written<E> {
    after: Option<Position>,
    events: Vec<WrittenEvent<E>>,
}

impl<E> Written<E> {
    /// The position of the mark: every event here comes after it. `None`
    /// if the mark was taken on an empty store.
    pub fn after(&self) -> Option<Position> {
        self.after
    }

    /// Every event, in position order.
    pub fn events(&self) -> &[WrittenEvent<E>] {
        &self.events
    }

    /// The events of `stream`, in version order (nothing if it was not
    /// written).
    pub fn stream(&self, stream: StreamId) -> impl Iterator<Item = &WrittenEvent<E>> + '_ {
        self.events
            .iter()
            .filter(move |event| event.stream == stream)
    }

    /// Every stream written, each once, in the order of its first event.
    pub fn streams(&self) -> Vec<StreamId> {
        let mut streams: Vec<StreamId> = Vec::new();
        for event in &self.events {
            if !streams.contains(&event.stream) {
                streams.push(event.stream);
            }
        }
        streams
    }

    /// How many events were written.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The store's last position as this recording saw it: the last event
    /// written, or the mark's position if nothing was; `None` for a store
    /// still empty. What a projection must have processed to include
    /// everything here (see [`assert_processed`](super::assert_processed)).
    pub fn head(&self) -> Option<Position> {
        self.events
            .last()
            .map(|event| event.position)
            .or(self.after)
    }

    /// Asserts that the events written to `stream` are exactly `expected`,
    /// in order (nothing written to it: pass no events). Events written to
    /// other streams are not checked. Returns `self`, to check another
    /// stream.
    ///
    /// # Panics
    ///
    /// If they differ, with a message naming the stream and the first
    /// difference (`first difference at #1`, counting from 0 in the
    /// stream's events since the mark), then both lists line by line
    /// (`Debug`), the written ones with their versions and positions and
    /// the first difference marked `>`, and the other streams written.
    ///
    /// ```should_panic
    /// # use hindsight::testkit::Mark;
    /// # use hindsight::{EventStore, ExpectedVersion, MemoryStore, StreamId, Transaction};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = MemoryStore::new();
    /// let mark = Mark::take(&store).await.unwrap();
    /// let cart = StreamId::new();
    /// EventStore::insert(&store, Transaction::single(cart, ExpectedVersion::Any, "added")).await.unwrap();
    /// // Panics: "... first difference at #0 (version 0, position 0) ..."
    /// mark.written().await.unwrap().assert_events(cart, ["removed"]);
    /// # }
    /// ```
    #[track_caller]
    pub fn assert_events(&self, stream: StreamId, expected: impl IntoIterator<Item = E>) -> &Self
    where
        E: fmt::Debug + PartialEq,
    {
        let expected: Vec<E> = expected.into_iter().collect();
        if let Some(message) = diff::stream_mismatch(self, stream, &expected) {
            panic!("{message}");
        }
        self
    }

    /// Asserts that nothing was written since the mark, to any stream.
    ///
    /// # Panics
    ///
    /// If something was, with a message listing every event written: its
    /// stream, version, position and `Debug`.
    ///
    /// ```
    /// # use hindsight::testkit::Mark;
    /// # use hindsight::MemoryStore;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = MemoryStore::<String>::new();
    /// let mark = Mark::take(&store).await.unwrap();
    /// mark.written().await.unwrap().assert_nothing_written();
    /// # }
    /// ```
    #[track_caller]
    pub fn assert_nothing_written(&self) -> &Self
    where
        E: fmt::Debug,
    {
        if let Some(message) = diff::something_written(self) {
            panic!("{message}");
        }
        self
    }
}
