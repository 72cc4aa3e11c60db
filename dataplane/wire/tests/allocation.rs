//! What decoding costs in heap allocations, counted by a global allocator.
//!
//! Setup: a counting allocator wraps the system one; counts are per thread, so tests running
//! in parallel do not see each other's allocations. Expectation: decoding a PUBLISH and
//! parsing its IoT Hub topic allocate nothing (mqttbytes would allocate the topic), and no
//! input makes the decoder allocate more than its packet bound at once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use dataplane_wire::iothub::{ClientId, MessageProperties, PublishTopic};
use dataplane_wire::mqtt::{Decoded, Decoder, Delivery, OutgoingPublish, Packet, PacketId};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static LARGEST_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn record(bytes: usize) {
    ALLOCATIONS.with(|count| count.set(count.get() + 1));
    LARGEST_BYTES.with(|largest| largest.set(largest.get().max(bytes)));
}

// SAFETY: every call forwards to `System` with the caller's arguments unchanged; the counters
// are const-initialized thread locals without destructors, so touching them never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `work` and returns its result with the allocations it made and the largest one.
fn counted<T>(work: impl FnOnce() -> T) -> (T, usize, usize) {
    ALLOCATIONS.with(|count| count.set(0));
    LARGEST_BYTES.with(|largest| largest.set(0));
    let result = work();
    (
        result,
        ALLOCATIONS.with(Cell::get),
        LARGEST_BYTES.with(Cell::get),
    )
}

/// A telemetry topic as the SDK writes it, with three properties and no escapes in values.
const TOPIC: &str = "devices/device-0001/messages/events/%24.mid=5d2c4a4e-7f7b-4c1a-9f0e-2b1d3c4e5f60&%24.ce=utf-8&temperature=21";

fn publishes(count: usize) -> Vec<u8> {
    let mut stream = Vec::new();
    for pkid in 1..=count {
        OutgoingPublish {
            topic: TOPIC,
            payload: &[0x5A; 256],
            delivery: Delivery::AtLeastOnce {
                pkid: PacketId::new(pkid as u16).unwrap(),
                dup: false,
            },
            retain: false,
        }
        .encode(&mut stream)
        .unwrap();
    }
    stream
}

#[test]
fn decoding_publishes_and_parsing_their_topics_allocates_nothing() {
    let mut buffer = BytesMut::from(&publishes(101)[..]);
    let decoder = Decoder::default();
    let client = ClientId::parse("device-0001").unwrap();
    // The first split turns the buffer's memory into shared memory: one allocation, once per
    // buffer, not per packet.
    let (first, allocations, _) = counted(|| decoder.decode(&mut buffer));
    assert!(matches!(first, Ok(Decoded::Packet(Packet::Publish(_)))));
    assert!(
        allocations <= 1,
        "{allocations} allocations on the first split"
    );
    let (decoded, allocations, _) = counted(|| {
        let mut decoded = 0;
        while let Ok(Decoded::Packet(Packet::Publish(publish))) = decoder.decode(&mut buffer) {
            let Ok(PublishTopic::Telemetry { properties }) =
                PublishTopic::parse(publish.topic(), &client)
            else {
                panic!("telemetry expected");
            };
            let properties = MessageProperties::parse(properties).unwrap();
            assert_eq!(properties.application().count(), 1);
            assert!(
                properties
                    .check_message_size(publish.payload().len())
                    .is_ok()
            );
            decoded += 1;
        }
        decoded
    });
    assert_eq!(decoded, 100);
    assert_eq!(allocations, 0, "decode and parse allocated");
}

#[test]
fn mqttbytes_allocates_for_every_publish_topic() {
    let mut buffer = BytesMut::from(&publishes(101)[..]);
    mqttbytes::v4::read(&mut buffer, usize::MAX).unwrap();
    let ((), allocations, _) = counted(|| {
        for _ in 0..100 {
            mqttbytes::v4::read(&mut buffer, usize::MAX).unwrap();
        }
    });
    assert!(
        allocations >= 100,
        "mqttbytes made {allocations} allocations for 100 PUBLISHes; the fast path's reason is gone"
    );
}

proptest::proptest! {
    /// Whatever arrives, one decode call never allocates more than the packet bound in one
    /// piece, however much the stream announces.
    #[test]
    fn no_input_allocates_beyond_the_packet_bound(
        stream in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..2_000),
        first_byte in proptest::sample::select(&[0x10u8, 0x30, 0x32, 0x82, 0xA2][..]),
    ) {
        let decoder = Decoder::new(512);
        let mut input = stream;
        input[0] = first_byte;
        let mut buffer = BytesMut::from(&input[..]);
        loop {
            let (result, _, largest) = counted(|| decoder.decode(&mut buffer));
            proptest::prop_assert!(largest <= decoder.packet_bytes_max(), "{} bytes", largest);
            if !matches!(result, Ok(Decoded::Packet(_))) {
                break;
            }
        }
    }
}
