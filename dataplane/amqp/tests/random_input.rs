//! Property tests: arbitrary bytes, and valid conversations with bytes flipped, cut or
//! spliced, never panic the server connection, and everything it transmits stays well
//! formed and within the peer's frame size (see `dataplane_amqp::fuzzing`).

mod common;

use dataplane_amqp::frame::{AMQP_HEADER, SASL_HEADER};
use dataplane_amqp::fuzzing::drive;
use dataplane_amqp::performative::{self, Role};
use proptest::prelude::*;

/// A conversation that reaches every handler: SASL, open, begin, CBS links and a request,
/// a partition receiver with credit, a C2D sender with a multi-frame message, flows,
/// dispositions, detaches, end and close.
fn conversation() -> Vec<u8> {
    let mut bytes = vec![0x10];
    bytes.extend_from_slice(&SASL_HEADER);
    performative::write_sasl_init(&mut bytes, "ANONYMOUS", Some(&[]), Some("localhost"));
    bytes.extend_from_slice(&AMQP_HEADER);
    bytes.extend(common::open_frame(Some(1_000), 600));
    bytes.extend(common::begin_frame(1, 16));
    bytes.extend(common::attach_frame(
        1,
        1,
        Role::Sender,
        "$cbs",
        None,
        &[],
        None,
    ));
    bytes.extend(common::attach_frame(
        1,
        2,
        Role::Receiver,
        "$cbs",
        None,
        &[],
        None,
    ));
    bytes.extend(common::flow_frame(1, 2, Some(0), 10, 0));
    let request = common::request_message(
        &[0x53, 0x01],
        &[
            ("operation", "put-token"),
            ("name", "sb://h/hub"),
            ("type", "jwt"),
        ],
        Some("token"),
    );
    bytes.extend(common::transfer_frame(
        1,
        1,
        Some(0),
        false,
        false,
        &request,
    ));
    bytes.extend(common::attach_frame(
        1,
        3,
        Role::Receiver,
        "amqps://h/hub/ConsumerGroups/$Default/Partitions/0",
        Some("amqp.annotation.x-opt-offset > '-1'"),
        &["com.microsoft:enable-receiver-runtime-metric"],
        Some(3),
    ));
    bytes.extend(common::flow_frame(1, 3, Some(0), 300, 0));
    bytes.extend(common::attach_frame(
        1,
        4,
        Role::Sender,
        "amqps://h/messages/devicebound",
        None,
        &[],
        None,
    ));
    bytes.extend(common::transfer_frame(
        1,
        4,
        Some(1),
        false,
        true,
        &[0x00, 0x53, 0x75, 0xa0, 0x03, 1],
    ));
    bytes.extend(common::transfer_frame(1, 4, None, false, false, &[2, 3]));
    bytes.extend(common::session_flow(1, 2, 100));
    bytes.extend(common::detach_frame(1, 3));
    bytes.extend(common::frame_bytes(
        1,
        &dataplane_amqp::performative::EndFields { error: None },
    ));
    bytes.extend(common::close_frame());
    bytes
}

/// Setup: the conversation as written.
/// Expectation: it reaches every handler the mutations are meant to stress.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

#[test]
fn the_unmutated_conversation_reaches_the_deep_handlers() {
    let coverage = drive(&conversation());
    assert_eq!(coverage.sasl_inits, 1);
    assert_eq!(coverage.attaches, 2, "{coverage:?}");
    assert_eq!(coverage.requests, 1, "{coverage:?}");
    assert_eq!(coverage.messages, 1, "{coverage:?}");
    assert!(coverage.sent >= 1, "{coverage:?}");
    assert!(coverage.frames > 20, "{coverage:?}");
}

proptest! {
    // 2000 cases by default; `PROPTEST_CASES` raises it for long runs.
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = drive(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_the_headers_never_panic(
        seed in any::<u8>(),
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = vec![seed];
        bytes.extend_from_slice(&SASL_HEADER);
        performative::write_sasl_init(&mut bytes, "ANONYMOUS", None, None);
        bytes.extend_from_slice(&AMQP_HEADER);
        bytes.extend(common::open_frame(None, 512));
        bytes.extend_from_slice(&tail);
        let _ = drive(&bytes);
    }

    #[test]
    fn mutated_conversations_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        seed in any::<u8>(),
    ) {
        let mut bytes = conversation();
        bytes[0] = seed;
        for (at, value) in flips {
            let index = at.index(bytes.len());
            bytes[index] = value;
        }
        let keep = cut.index(bytes.len()) + 1;
        bytes.truncate(keep.max(bytes.len() / 2));
        let _ = drive(&bytes);
    }
}
