//! What a subscription selects: which streams, from where, which types.

use crate::ids::{Position, StreamId};
use crate::name::category_of;
use crate::read::Start;
use std::fmt;

/// Names the type of an event, for subscriptions that select by type.
///
/// A name is a plain string so that a database backend can store it in a
/// column and push a type filter down into its query (`WHERE type = ANY($1)`)
/// instead of shipping every event to the subscriber.
///
/// ```
/// use hindsight::EventType;
///
/// enum Account { Opened, Deposited(u64) }
///
/// impl EventType for Account {
///     fn event_type(&self) -> &str {
///         match self {
///             Account::Opened => "AccountOpened",
///             Account::Deposited(_) => "MoneyDeposited",
///         }
///     }
/// }
/// assert_eq!(Account::Deposited(5).event_type(), "MoneyDeposited");
/// ```
pub trait EventType {
    /// The name of this event's type.
    fn event_type(&self) -> &str;
}

/// Which events a subscription delivers: all streams, one, or one
/// category of named streams, from the beginning or after a position,
/// optionally only some event types.
///
/// Events a subscription does not select (other streams, other types,
/// positions before its start) still advance it: it has *passed* them.
///
/// ```
/// use hindsight::{EventType, Position, Selector, StreamId};
///
/// struct Named(&'static str);
/// impl EventType for Named {
///     fn event_type(&self) -> &str { self.0 }
/// }
///
/// let everything: Selector<Named> = Selector::all();
/// let one_stream_later: Selector<Named> = Selector::stream(StreamId::new()).after(Position(41));
/// let only_deposits: Selector<Named> = Selector::all().only_types(["MoneyDeposited"]);
/// # let _ = (everything, one_stream_later, only_deposits);
/// ```
pub struct Selector<E> {
    pub(crate) stream: Option<StreamId>,
    /// The category selected (all streams whose name's category it is);
    /// `None` selects every stream (or `stream`).
    pub(crate) category: Option<Box<str>>,
    pub(crate) start: Start,
    /// Selected type names; `None` selects every type.
    pub(crate) types: Option<Box<[Box<str>]>>,
    /// How to name an event's type, when `E: EventType` was made known.
    pub(crate) namer: Option<fn(&E) -> &str>,
}

impl<E> Selector<E> {
    /// Every stream, from the beginning.
    pub fn all() -> Self {
        Self {
            stream: None,
            category: None,
            start: Start::Beginning,
            types: None,
            namer: None,
        }
    }

    /// One stream, from its beginning. The subscription follows the
    /// stream's own index and never scans the rest of the log.
    pub fn stream(stream: StreamId) -> Self {
        Self {
            stream: Some(stream),
            ..Self::all()
        }
    }

    /// Every stream of category `category` (KurrentDB's `$ce-` streams),
    /// from the beginning: the events of every stream whose name
    /// ([`StreamName`](crate::StreamName)) has that category, the part
    /// before its name's first `-` ([`StreamName::category`](crate::StreamName::category)),
    /// in global order, history then live like any all-streams
    /// subscription. Unnamed streams belong to no category; nor does a
    /// name without a `-`. A category that is empty or holds a `-` selects
    /// nothing.
    ///
    /// The subscription reads the whole log and skips the other streams'
    /// events (which still advance it, [contract](crate::contract) rule
    /// 18); subscriptions that select
    /// no category pay nothing for the check.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamName, Transaction};
    /// let store = MemoryStore::new();
    /// let name = |text: &str| StreamName::new(text).unwrap();
    /// store.insert(Transaction::new()
    ///     .append_named(&name("order-1"), ExpectedVersion::Any, ["placed 1"])
    ///     .append_named(&name("cart-1"), ExpectedVersion::Any, ["added"])
    ///     .append_named(&name("order-2"), ExpectedVersion::Any, ["placed 2"])).unwrap();
    ///
    /// let mut orders = store.subscribe(Selector::category("order"));
    /// let mut seen = Vec::new();
    /// orders.drain(|event| seen.push(*event.payload())).unwrap();
    /// seen.sort(); // streams are laid out by id in a transaction
    /// assert_eq!(seen, ["placed 1", "placed 2"]);
    /// ```
    #[doc(alias = "$ce")]
    #[doc(alias = "by_category")]
    pub fn category(category: impl Into<String>) -> Self {
        Self {
            category: Some(category.into().into_boxed_str()),
            ..Self::all()
        }
    }

    /// The category selected, or `None`: what a database backend pushes
    /// down into its query.
    ///
    /// ```
    /// use hindsight::Selector;
    /// assert_eq!(Selector::<()>::category("order").selected_category(), Some("order"));
    /// assert_eq!(Selector::<()>::all().selected_category(), None);
    /// ```
    pub fn selected_category(&self) -> Option<&str> {
        self.category.as_deref()
    }

    /// Whether this selector's category (if it has one) holds the stream
    /// called `name` (`None`: an unnamed stream).
    ///
    /// ```
    /// use hindsight::Selector;
    /// let orders = Selector::<()>::category("order");
    /// assert!(orders.selects_stream_name(Some("order-42")));
    /// assert!(!orders.selects_stream_name(Some("orderly-1")));
    /// assert!(!orders.selects_stream_name(None));
    /// assert!(Selector::<()>::all().selects_stream_name(None));
    /// ```
    #[inline]
    pub fn selects_stream_name(&self, name: Option<&str>) -> bool {
        match &self.category {
            None => true,
            Some(category) => name.and_then(category_of) == Some(&**category),
        }
    }

    /// Starts after global position `position` (exclusive), for all streams
    /// and for one stream alike.
    pub fn after(self, position: Position) -> Self {
        self.start(Start::After(position))
    }

    /// Starts at `start`.
    pub fn start(self, start: Start) -> Self {
        Self { start, ..self }
    }

    /// The stream selected, or `None` for all streams.
    pub fn selected_stream(&self) -> Option<StreamId> {
        self.stream
    }

    /// Whether this selector delivers `event` (ignoring stream and start).
    #[inline]
    pub(crate) fn selects_type(&self, event: &E) -> bool {
        match (&self.types, self.namer) {
            (Some(types), Some(namer)) => {
                let name = namer(event);
                types.iter().any(|t| **t == *name)
            }
            _ => true,
        }
    }

    // What a backend outside this crate reads of a selector (and `resume`,
    // how it restarts one from a checkpoint).

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
    #[cfg(not(loom))]
    pub fn resume<C: crate::Cursor>(self, checkpoint: Option<C>) -> Self {
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

impl<E: EventType> Selector<E> {
    /// Delivers only events whose [`EventType::event_type`] is one of
    /// `types`; the others are skipped (and still advance the
    /// subscription). Also names event types in handler errors.
    pub fn only_types<S: Into<String>>(self, types: impl IntoIterator<Item = S>) -> Self {
        let types = types
            .into_iter()
            .map(|t| t.into().into_boxed_str())
            .collect();
        Self {
            types: Some(types),
            ..self.with_type_names()
        }
    }

    /// Names event types (with [`EventType`]) in handler errors, without
    /// filtering by type.
    pub fn with_type_names(self) -> Self {
        Self {
            namer: Some(<E as EventType>::event_type),
            ..self
        }
    }
}

impl<E> Clone for Selector<E> {
    fn clone(&self) -> Self {
        Self {
            stream: self.stream,
            category: self.category.clone(),
            start: self.start,
            types: self.types.clone(),
            namer: self.namer,
        }
    }
}

impl<E> fmt::Debug for Selector<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("stream", &self.stream)
            .field("category", &self.category)
            .field("start", &self.start)
            .field("types", &self.types)
            .finish()
    }
}
