//! Event Hubs readers on a shard other than their partition's owner: they see a commit at
//! once (the owner's notice over the mesh, no polling), and owner levels hold across shards.
//!
//! Each test starts the data plane in this process with two shards, each on its own ports
//! (`common`), so a test picks the shard every connection lands on. Readers log in with the
//! policy key; messages come from a device over MQTT.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Login, publish, start};

/// Setup: partition 1 (owned by shard 1) has a reader on shard 0 and one on shard 1, both
/// attached at `@latest`; then a device sends one message.
/// Expectation: both readers receive it well within the time-out. The reader on shard 0 has
/// no way to learn of it but the owner's notice: nothing polls.
#[test]
fn readers_on_every_shard_receive_a_commit_without_polling() {
    let plane = start();
    let mut remote = Client::open(plane.amqp_ports[0], Login::PolicyKey);
    remote.attach_partition(0, 1, None);
    let mut local = Client::open(plane.amqp_ports[1], Login::PolicyKey);
    local.attach_partition(0, 1, None);
    assert_eq!(remote.attached(), None);
    assert_eq!(local.attached(), None);
    let sent = Instant::now();
    publish(plane.mqtt_ports[1], 1);
    remote.transfer();
    local.transfer();
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    // Partition 0 (owned by shard 0) read from shard 1, the other way round.
    let mut other = Client::open(plane.amqp_ports[1], Login::PolicyKey);
    other.attach_partition(0, 0, None);
    assert_eq!(other.attached(), None);
    publish(plane.mqtt_ports[0], 0);
    other.transfer();
}

/// Setup: a reader with owner level 1 on shard 0 reads partition 1 (owned by shard 1); a
/// reader with owner level 2 attaches on shard 1; then one with level 1 again on shard 0.
/// Expectation: the first is detached with `amqp:link:stolen`, the third is refused with the
/// same condition, and the second keeps reading.
#[test]
fn a_higher_owner_level_on_one_shard_takes_the_partition_from_another_shard() {
    let plane = start();
    let mut first = Client::open(plane.amqp_ports[0], Login::PolicyKey);
    first.attach_partition(0, 1, Some(1));
    assert_eq!(first.attached(), None);
    let mut second = Client::open(plane.amqp_ports[1], Login::PolicyKey);
    second.attach_partition(0, 1, Some(2));
    assert_eq!(second.attached(), None);
    assert_eq!(first.detached().as_deref(), Some("amqp:link:stolen"));
    let mut third = Client::open(plane.amqp_ports[0], Login::PolicyKey);
    third.attach_partition(0, 1, Some(1));
    assert_eq!(third.attached().as_deref(), Some("amqp:link:stolen"));
    publish(plane.mqtt_ports[1], 1);
    second.transfer();
}
