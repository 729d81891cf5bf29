//! Hindsight's own `MemoryStore`, through the benchmark traits.

use crate::harness::contender::{Contender, GlobalRead, MultiStream, Subscribe, Subscription};
use crate::harness::Payload;
use hindsight::{
    ExpectedVersion, MemoryStore, Selector, Start, StreamHandle, StreamId, StreamVersion,
    Transaction,
};

impl Contender for MemoryStore<Payload> {
    const NAME: &'static str = "hindsight";
    type Stream = StreamId;

    fn new() -> Self {
        MemoryStore::new()
    }

    fn stream(&self, index: u64) -> StreamId {
        StreamId::from_uuid(uuid::Uuid::from_u64_pair(0x6869_6e64_7369_6768, index))
    }

    fn append(&self, stream: &StreamId, events: &[Payload]) {
        self.insert(Transaction::new().append(
            *stream,
            ExpectedVersion::Any,
            events.iter().copied(),
        ))
        .expect("an Any append cannot conflict");
    }

    fn read_stream(&self, stream: &StreamId, mut visit: impl FnMut(&Payload)) -> u64 {
        let mut count = 0;
        for event in MemoryStore::read_stream(self, *stream, StreamVersion(0)) {
            visit(event.payload());
            count += 1;
        }
        count
    }
}

impl MultiStream for MemoryStore<Payload> {
    fn append_exact(&self, writes: &[(&StreamId, u64, &[Payload])]) -> bool {
        let mut tx = Transaction::new();
        for &(stream, expected_len, events) in writes {
            let expected = match expected_len {
                0 => ExpectedVersion::NoStream,
                len => ExpectedVersion::Exact(StreamVersion(len - 1)),
            };
            tx = tx.append(*stream, expected, events.iter().copied());
        }
        self.insert(tx).is_ok()
    }
}

impl GlobalRead for MemoryStore<Payload> {
    fn read_all(&self, mut visit: impl FnMut(&Payload)) -> u64 {
        let mut count = 0;
        for event in MemoryStore::read_all(self, Start::Beginning) {
            visit(event.payload());
            count += 1;
        }
        count
    }
}

impl Subscribe for MemoryStore<Payload> {
    type Subscription<'a> = hindsight::Subscription<Payload>;

    fn subscribe(&self) -> hindsight::Subscription<Payload> {
        MemoryStore::subscribe(self, Selector::all())
    }
}

impl Subscription for hindsight::Subscription<Payload> {
    fn try_next(&mut self) -> Option<Payload> {
        hindsight::Subscription::try_next(self)
            .expect("the benchmark store is never poisoned")
            .map(|event| *event.payload())
    }

    fn next(&mut self) -> Payload {
        *hindsight::Subscription::next(self)
            .expect("the benchmark store is never poisoned")
            .payload()
    }
}

/// Hindsight's `MemoryStore` written through stream handles
/// (`MemoryStore::stream`): the stream is looked up once per handle, not
/// once per append. The same store as `hindsight`, through its fast path.
pub struct Handles(MemoryStore<Payload>);

impl Contender for Handles {
    const NAME: &'static str = "hindsight-handle";
    type Stream = StreamHandle<Payload>;

    fn new() -> Self {
        Handles(MemoryStore::new())
    }

    fn stream(&self, index: u64) -> StreamHandle<Payload> {
        self.0.stream(Contender::stream(&self.0, index))
    }

    fn append(&self, stream: &StreamHandle<Payload>, events: &[Payload]) {
        stream
            .append(ExpectedVersion::Any, events.iter().copied())
            .expect("an Any append cannot conflict");
    }

    fn read_stream(&self, stream: &StreamHandle<Payload>, visit: impl FnMut(&Payload)) -> u64 {
        Contender::read_stream(&self.0, &stream.id(), visit)
    }
}
