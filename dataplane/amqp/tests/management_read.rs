//! `$management` READ requests and their response bodies, with the AMQP types clients expect.

mod common;

use common::{Peer, Received, attach_frame, flow_frame, request_message, transfer_frame};
use dataplane_amqp::Event;
use dataplane_amqp::management::{
    EventHubProperties, ManagementNode, PartitionProperties, ReadRequest,
};
use dataplane_amqp::message::Sections;
use dataplane_amqp::performative::Role;
use serde_amqp::Value;

fn read(
    peer: &mut Peer,
    properties: &[(&str, &str)],
) -> dataplane_amqp::management::ManagementRequest {
    let mut uuid = vec![0x98];
    uuid.extend_from_slice(&[1; 16]);
    peer.send(&transfer_frame(
        1,
        1,
        Some(0),
        false,
        false,
        &request_message(&uuid, properties, None),
    ));
    match peer.events().pop() {
        Some(Event::ManagementRequest(request)) => request,
        other => panic!("{other:?}"),
    }
}

fn management_links(peer: &mut Peer) {
    peer.open();
    peer.send(&attach_frame(
        1,
        1,
        Role::Sender,
        "$management",
        None,
        &[],
        None,
    ));
    peer.send(&attach_frame(
        1,
        2,
        Role::Receiver,
        "$management",
        None,
        &[],
        None,
    ));
    peer.send(&flow_frame(1, 2, Some(0), 10_000, 0));
    peer.recv();
}

/// Setup: READ of `com.microsoft:eventhub`, answered with two partitions.
/// Expectation: the request parses; the response body is a map with `name` string,
/// `created_at` timestamp and `partition_ids` an array of strings.
#[test]
fn eventhub_read_round_trips_with_exact_types() {
    let mut peer = Peer::new();
    management_links(&mut peer);
    let request = read(
        &mut peer,
        &[
            ("operation", "READ"),
            ("name", "hub"),
            ("type", "com.microsoft:eventhub"),
            ("security_token", "SharedAccessSignature x"),
        ],
    );
    assert_eq!(request.node, ManagementNode::Management);
    assert_eq!(
        ReadRequest::from_request(&request),
        Ok(ReadRequest::EventHub {
            name: "hub".into(),
            security_token: Some("SharedAccessSignature x".into())
        })
    );
    let body = EventHubProperties {
        name: "hub".into(),
        created_at_ms: 1_700_000_000_000,
        partition_ids: vec!["0".into(), "1".into()],
    }
    .to_value();
    peer.conn
        .respond(request.request, 200, "OK", Some(&body))
        .expect("answerable");
    let received = peer.recv();
    let Received::Amqp { payload, .. } = &received[1] else {
        panic!("{received:?}")
    };
    let Some(Value::Map(map)) = Sections::split(payload)
        .expect("splits")
        .value_body()
        .expect("decodes")
    else {
        panic!("not a map")
    };
    let get = |k: &str| map.get(&Value::String(k.into())).cloned();
    assert_eq!(get("name"), Some(Value::String("hub".into())));
    assert!(
        matches!(get("created_at"), Some(Value::Timestamp(t)) if t.milliseconds() == 1_700_000_000_000)
    );
    let Some(Value::Array(ids)) = get("partition_ids") else {
        panic!("partition_ids is not an array")
    };
    assert_eq!(
        ids.0,
        vec![Value::String("0".into()), Value::String("1".into())]
    );
}

/// Setup: READ of `com.microsoft:partition`.
/// Expectation: the partition id parses; the body keeps the offset a string, the sequence
/// numbers longs, the time a timestamp and emptiness a boolean.
#[test]
fn partition_read_round_trips_with_exact_types() {
    let mut peer = Peer::new();
    management_links(&mut peer);
    let request = read(
        &mut peer,
        &[
            ("operation", "READ"),
            ("name", "hub"),
            ("type", "com.microsoft:partition"),
            ("partition", "3"),
        ],
    );
    assert_eq!(
        ReadRequest::from_request(&request),
        Ok(ReadRequest::Partition {
            name: "hub".into(),
            partition: "3".into(),
            security_token: None
        })
    );
    let body = PartitionProperties {
        name: "hub".into(),
        partition: "3".into(),
        begin_sequence_number: 0,
        last_enqueued_sequence_number: 41,
        last_enqueued_offset: "20992".into(),
        last_enqueued_time_ms: 1_700_000_000_500,
        is_partition_empty: false,
    }
    .to_value();
    peer.conn
        .respond(request.request, 200, "OK", Some(&body))
        .expect("answerable");
    let received = peer.recv();
    let Received::Amqp { payload, .. } = &received[1] else {
        panic!()
    };
    let Some(Value::Map(map)) = Sections::split(payload)
        .expect("splits")
        .value_body()
        .expect("decodes")
    else {
        panic!()
    };
    let get = |k: &str| map.get(&Value::String(k.into())).cloned();
    assert_eq!(get("begin_sequence_number"), Some(Value::Long(0)));
    assert_eq!(get("last_enqueued_sequence_number"), Some(Value::Long(41)));
    assert_eq!(
        get("last_enqueued_offset"),
        Some(Value::String("20992".into()))
    );
    assert!(matches!(
        get("last_enqueued_time_utc"),
        Some(Value::Timestamp(_))
    ));
    assert_eq!(get("is_partition_empty"), Some(Value::Bool(false)));
}

/// Setup: a READ with an unknown type.
/// Expectation: the helper refuses it; the caller can still answer with a status.
#[test]
fn an_unknown_read_type_is_refused_by_the_helper() {
    let mut peer = Peer::new();
    management_links(&mut peer);
    let request = read(
        &mut peer,
        &[
            ("operation", "READ"),
            ("name", "hub"),
            ("type", "com.microsoft:nonsense"),
        ],
    );
    assert!(ReadRequest::from_request(&request).is_err());
    peer.conn
        .respond(request.request, 404, "not found", None)
        .expect("answerable");
}
