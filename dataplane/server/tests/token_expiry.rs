//! A receiver reads under the put-token that authorized its consumer group: a refreshed token
//! keeps it reading past the first token's expiry, and without one it is detached with
//! `amqp:unauthorized-access` when the token expires.
//!
//! The data plane runs in this process (`common`); the client logs in with SASL ANONYMOUS and
//! puts Event Hubs SAS tokens on `$cbs`, as the Event Hubs SDKs do.

mod common;

use std::time::Duration;

use common::{Client, Login, now_secs, publish, start};

/// Setup: a token that expires in 2 s authorizes a receiver; a second token, valid for an
/// hour, is put on the same `$cbs` link; then 3 s pass and a device sends a message.
/// Expectation: both put-tokens answer 200, and the receiver gets the message.
#[test]
fn a_refreshed_token_keeps_a_receiver_reading_past_the_first_expiry() {
    let plane = start();
    let mut client = Client::open(plane.amqp_ports[0], Login::Anonymous);
    client.attach_cbs();
    assert_eq!(client.put_token(now_secs() + 2), 200);
    client.attach_partition(5, 0, None);
    assert_eq!(client.attached(), None);
    assert_eq!(client.put_token(now_secs() + 3600), 200);
    std::thread::sleep(Duration::from_secs(3));
    publish(plane.mqtt_ports[0], 0);
    client.transfer();
}

/// Setup: a token that expires in 2 s authorizes a receiver, and nothing refreshes it.
/// Expectation: the receiver is detached with `amqp:unauthorized-access` once it expires.
#[test]
fn a_receiver_whose_token_expires_is_detached_as_unauthorized() {
    let plane = start();
    let mut client = Client::open(plane.amqp_ports[1], Login::Anonymous);
    client.attach_cbs();
    assert_eq!(client.put_token(now_secs() + 2), 200);
    client.attach_partition(5, 0, None);
    assert_eq!(client.attached(), None);
    assert_eq!(
        client.detached().as_deref(),
        Some("amqp:unauthorized-access")
    );
}

/// Setup: an expired token, then a receiver attach without any valid token.
/// Expectation: the put-token answers 401, and the attach is refused with
/// `amqp:unauthorized-access`.
#[test]
fn a_receiver_without_a_valid_token_is_refused() {
    let plane = start();
    let mut client = Client::open(plane.amqp_ports[0], Login::Anonymous);
    client.attach_cbs();
    assert_eq!(client.put_token(now_secs().saturating_sub(10)), 401);
    client.attach_partition(5, 1, None);
    assert_eq!(
        client.attached().as_deref(),
        Some("amqp:unauthorized-access")
    );
}
