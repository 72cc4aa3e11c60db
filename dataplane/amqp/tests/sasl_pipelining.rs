//! SASL: the mechanisms we offer, the caller's decision, and clients that pipeline their AMQP
//! header and frames before our answers went out.

mod common;

use common::{Peer, Received, attach_frame, begin_frame, open_frame};
use dataplane_amqp::frame::{AMQP_HEADER, SASL_HEADER};
use dataplane_amqp::performative::{self, Role, SaslFrame};
use dataplane_amqp::sasl::{Mechanism, SaslOutcome};
use dataplane_amqp::{CloseReason, Event};

/// Setup: a client sends its SASL header and init, then its AMQP header, open, begin and two
/// `$cbs` attaches in the same write, before the server has answered the init.
/// Expectation: nothing past the init is processed until the caller decides; then the server
/// answers everything in order: outcome, header, open, begin, both attaches and the credit.
#[test]
fn frames_pipelined_before_the_sasl_outcome_are_held_until_the_caller_decides() {
    let mut peer = Peer::new();
    let mut bytes = SASL_HEADER.to_vec();
    performative::write_sasl_init(&mut bytes, "ANONYMOUS", Some(&[]), Some("localhost"));
    bytes.extend_from_slice(&AMQP_HEADER);
    bytes.extend(open_frame(None, 1 << 20));
    bytes.extend(begin_frame(1, 65_536));
    bytes.extend(attach_frame(1, 1, Role::Sender, "$cbs", None, &[], None));
    bytes.extend(attach_frame(1, 2, Role::Receiver, "$cbs", None, &[], None));
    peer.send(&bytes);

    let before: Vec<&str> = peer.recv().iter().map(Received::name).collect();
    assert_eq!(
        before,
        ["header", "sasl"],
        "only our header and mechanisms so far"
    );
    let events = peer.events();
    let [Event::SaslInit(init)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(init.mechanism, Mechanism::Anonymous);
    assert_eq!(init.hostname.as_deref(), Some("localhost"));

    peer.conn.complete_sasl(SaslOutcome::Ok).expect("pending");
    let after: Vec<&str> = peer.recv().iter().map(Received::name).collect();
    assert_eq!(
        after,
        [
            "sasl", "header", "open", "begin", "attach", "flow", "attach"
        ]
    );
    assert!(matches!(peer.events()[..], [Event::Opened { .. }]));
}

/// Setup: the pyamqp order: the client waits for the outcome, then writes its AMQP header,
/// open, begin and attaches at once, before our AMQP header arrived.
/// Expectation: all of it is answered in one go.
#[test]
fn frames_pipelined_after_the_outcome_are_answered_together() {
    let mut peer = Peer::new();
    let mut bytes = SASL_HEADER.to_vec();
    performative::write_sasl_init(&mut bytes, "MSSBCBS", None, Some("localhost"));
    peer.send(&bytes);
    assert!(
        matches!(&peer.events()[..], [Event::SaslInit(i)] if i.mechanism == Mechanism::MsSbCbs)
    );
    peer.conn.complete_sasl(SaslOutcome::Ok).expect("pending");
    peer.recv();
    let mut bytes = AMQP_HEADER.to_vec();
    bytes.extend(open_frame(None, 1 << 20));
    bytes.extend(begin_frame(1, 65_536));
    bytes.extend(attach_frame(1, 1, Role::Sender, "$cbs", None, &[], None));
    peer.send(&bytes);
    let names: Vec<&str> = peer.recv().iter().map(Received::name).collect();
    assert_eq!(names, ["header", "open", "begin", "attach", "flow"]);
}

/// Setup: a client reads our mechanism list.
/// Expectation: ANONYMOUS (azure-eventhub), MSSBCBS (uamqp) and PLAIN are all offered.
#[test]
fn mechanisms_offered_include_anonymous_mssbcbs_and_plain() {
    let mut peer = Peer::new();
    peer.send(&SASL_HEADER);
    let received = peer.recv();
    let Received::Sasl(SaslFrame::Mechanisms(mechanisms)) = &received[1] else {
        panic!("{received:?}")
    };
    let names: Vec<&str> = mechanisms
        .sasl_server_mechanisms
        .0
        .iter()
        .map(fe2o3_amqp_types::primitives::Symbol::as_str)
        .collect();
    assert!(names.contains(&"ANONYMOUS"));
    assert!(names.contains(&"MSSBCBS"));
    assert!(names.contains(&"PLAIN"));
}

/// Setup: PLAIN with credentials the caller refuses.
/// Expectation: the credentials reach the caller; the outcome is code 1 (auth) and the
/// connection ends with one Closed event.
#[test]
fn plain_credentials_reach_the_caller_who_can_refuse_them() {
    let mut peer = Peer::new();
    let mut bytes = SASL_HEADER.to_vec();
    performative::write_sasl_init(
        &mut bytes,
        "PLAIN",
        Some(b"\0device1\0SharedAccessSignature sr=x"),
        None,
    );
    peer.send(&bytes);
    let events = peer.events();
    let [Event::SaslInit(init)] = &events[..] else {
        panic!("{events:?}")
    };
    let plain = init.plain.as_ref().expect("credentials");
    assert_eq!(plain.username, "device1");
    assert_eq!(plain.password, "SharedAccessSignature sr=x");
    peer.recv();
    peer.conn.complete_sasl(SaslOutcome::Auth).expect("pending");
    let received = peer.recv();
    let [Received::Sasl(SaslFrame::Outcome(outcome))] = &received[..] else {
        panic!("{received:?}")
    };
    assert_eq!(outcome.code.clone() as u8, 1);
    assert!(peer.conn.is_closed());
    assert_eq!(peer.events(), [Event::Closed(CloseReason::SaslFailed)]);
}

/// Setup: a mechanism we do not offer.
/// Expectation: outcome auth at once, without asking the caller.
#[test]
fn an_unknown_mechanism_fails_without_asking_the_caller() {
    let mut peer = Peer::new();
    let mut bytes = SASL_HEADER.to_vec();
    performative::write_sasl_init(&mut bytes, "SCRAM-SHA-256", None, None);
    peer.send(&bytes);
    assert_eq!(peer.events(), [Event::Closed(CloseReason::SaslFailed)]);
    let received = peer.recv();
    assert!(matches!(
        received.last(),
        Some(Received::Sasl(SaslFrame::Outcome(_)))
    ));
}

/// Setup: a client that skips SASL and sends the AMQP header first.
/// Expectation: refused with our SASL header by default; accepted when configured.
#[test]
fn a_bare_amqp_header_is_refused_unless_allowed() {
    let mut peer = Peer::new();
    peer.send(&AMQP_HEADER);
    assert_eq!(peer.recv_bytes(), SASL_HEADER);
    assert_eq!(
        peer.events(),
        [Event::Closed(CloseReason::ProtocolMismatch(AMQP_HEADER))]
    );

    let mut peer = Peer::with_config(dataplane_amqp::Config {
        allow_no_sasl: true,
        ..Default::default()
    });
    let mut bytes = AMQP_HEADER.to_vec();
    bytes.extend(open_frame(None, 1 << 20));
    peer.send(&bytes);
    let names: Vec<&str> = peer.recv().iter().map(Received::name).collect();
    assert_eq!(names, ["header", "open"]);
    assert!(peer.conn.is_open());
}
