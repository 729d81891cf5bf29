//! What a backend outside this crate needs to see of the shared types:
//! a transaction's writes, a way to build [`Committed`], a selector's parts.
//!
//! These are additive inherent methods on existing types, kept in this file
//! so that the types' own files stay as they were.

use super::Cursor;
use crate::ids::{CorrelationId, Position, StreamId};
use crate::read::Start;
use crate::selector::Selector;
use crate::transaction::{Committed, ExpectedVersion, StreamHead, Transaction};

/// The writes of one stream in a transaction, as a backend applies them.
///
/// ```
/// use hindsight::{ExpectedVersion, StreamId, Transaction};
/// let stream = StreamId::new();
/// let (writes, _) = Transaction::single(stream, ExpectedVersion::NoStream, 'a').into_writes();
/// assert_eq!(writes[0].stream, stream);
/// assert_eq!(writes[0].events, ['a']);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamWrite<E> {
    /// The stream.
    pub stream: StreamId,
    /// What the transaction expects of it.
    pub expected: ExpectedVersion,
    /// Its events, in order (possibly none: a pure check).
    pub events: Vec<E>,
}

impl<E> Transaction<E> {
    /// The transaction as a backend applies it: one write per stream, in
    /// ascending stream id order (the layout of contract rule 9), appends to the same
    /// stream merged (events concatenated, the first expectation kept: rule
    /// 10), and the correlation id every event carries.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, StreamId, Transaction, Uuid};
    /// let (a, b) = (StreamId::from_uuid(Uuid::from_u128(1)), StreamId::from_uuid(Uuid::from_u128(2)));
    /// let tx = Transaction::new()
    ///     .append(b, ExpectedVersion::NoStream, [1])
    ///     .append(a, ExpectedVersion::Any, [2])
    ///     .append(b, ExpectedVersion::StreamExists, [3]);
    /// let (writes, correlation_id) = tx.into_writes();
    /// assert_eq!(writes.iter().map(|w| w.stream).collect::<Vec<_>>(), [a, b]);
    /// assert_eq!(writes[1].expected, ExpectedVersion::NoStream);
    /// assert_eq!(writes[1].events, [1, 3]);
    /// assert_eq!(correlation_id, None);
    /// ```
    pub fn into_writes(self) -> (Vec<StreamWrite<E>>, Option<CorrelationId>) {
        let (appends, correlation_id) = self.into_normalized();
        let writes = appends
            .into_iter()
            .map(|append| StreamWrite {
                stream: append.stream,
                expected: append.expected,
                events: append.events.into_vec(),
            })
            .collect();
        (writes, correlation_id)
    }
}

impl Committed {
    /// What a successful insert reports: the position of its last event
    /// (`None` if it wrote none) and the new head of every stream it wrote
    /// events to (in any order; kept sorted by stream id). For backends.
    ///
    /// ```
    /// use hindsight::{Committed, Position, StreamHead, StreamId, StreamVersion};
    /// let stream = StreamId::new();
    /// let head = StreamHead { version: StreamVersion(0), position: Position(4) };
    /// let committed = Committed::new(Some(Position(4)), vec![(stream, head)]);
    /// assert_eq!(committed.stream(stream), Some(head));
    /// ```
    pub fn new(last_position: Option<Position>, mut streams: Vec<(StreamId, StreamHead)>) -> Self {
        streams.sort_by_key(|(stream, _)| *stream);
        Committed {
            last_position,
            streams: streams.into(),
        }
    }
}

impl<E> Selector<E> {
    /// Where the subscription starts.
    ///
    /// ```
    /// use hindsight::{Position, Selector, Start};
    /// assert_eq!(Selector::<()>::all().after(Position(3)).start_point(), Start::After(Position(3)));
    /// ```
    pub fn start_point(&self) -> Start {
        self.start
    }

    /// Starts after `checkpoint` (exclusive), or from the beginning for
    /// `None`: resumes a subscription from a stored cursor.
    ///
    /// ```
    /// use hindsight::{Position, Selector, Start};
    /// assert_eq!(Selector::<()>::all().resume(Some(Position(9))).start_point(), Start::After(Position(9)));
    /// assert_eq!(Selector::<()>::all().resume(None::<Position>).start_point(), Start::Beginning);
    /// ```
    pub fn resume<C: Cursor>(self, checkpoint: Option<C>) -> Self {
        self.start(checkpoint.map_or(Start::Beginning, |c| Start::After(c.position())))
    }

    /// The type names selected, or `None` if every type is selected: what a
    /// database backend pushes down into its query.
    ///
    /// ```
    /// use hindsight::{EventType, Selector};
    /// struct Named;
    /// impl EventType for Named { fn event_type(&self) -> &str { "Named" } }
    /// let selector = Selector::<Named>::all().only_types(["Named"]);
    /// assert_eq!(selector.selected_types().unwrap().len(), 1);
    /// ```
    pub fn selected_types(&self) -> Option<&[Box<str>]> {
        self.types.as_deref()
    }

    /// The type name of `event`, if the selector names types
    /// ([`Selector::with_type_names`] or [`Selector::only_types`]).
    pub fn event_type_name<'e>(&self, event: &'e E) -> Option<&'e str> {
        self.namer.map(|name| name(event))
    }

    /// Whether the type filter selects `event` (ignoring stream and start).
    pub fn selects_event(&self, event: &E) -> bool {
        self.selects_type(event)
    }
}
