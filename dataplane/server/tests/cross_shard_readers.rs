//! Event Hubs readers on a shard other than their partition's owner: they see a commit at
//! once (the owner's notice over the mesh, no polling), and owner levels hold across shards.
//!
//! Each test starts the data plane in this process with two shards and plain-TCP listeners
//! bound to port 0, so each shard listens on its own port and a test picks the shard a
//! connection lands on. Partition `p` is owned by shard `p % 2`. Readers are minimal AMQP
//! clients (SASL PLAIN with the policy key); messages come from a device over MQTT.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dataplane::{DataPlane, DataPlaneConfig, Limits, ListenerConfig};
use dataplane_amqp::codec::{self, Compound};
use dataplane_amqp::frame::{AMQP_HEADER, SASL_HEADER};
use dataplane_amqp::performative::{
    AttachFields, BeginFields, FlowFields, LinkFlowFields, OpenFields, Role, write_frame,
    write_sasl_init,
};
use fe2o3_amqp_types::performatives::Performative;
use schemas::plane::{
    ControlMessage, Credentials, HubSnapshot, Identity, IdentityKey, PolicyGrant,
};

const HUB: &str = "hub";
const KEY: &str = "Y3Jvc3Mtc2hhcmQtcmVhZGVycy10ZXN0LWtleS0zMiE=";
const DEVICE_KEY: [u8; 32] = [7; 32];
const TIMEOUT: Duration = Duration::from_secs(10);

/// A data plane with two shards and the ports each shard listens on.
struct Plane {
    running: Option<DataPlane>,
    amqp_ports: Vec<u16>,
    mqtt_ports: Vec<u16>,
    _dir: tempfile::TempDir,
    _control: crossbeam_channel::Sender<ControlMessage>,
}

impl Drop for Plane {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
    }
}

/// A device id that lands in `partition` of 2.
fn device_in(partition: u32) -> String {
    (0..1000)
        .map(|index| format!("device-{index}"))
        .find(|id| dataplane::shard::placement::partition_of(id, 2) == partition)
        .expect("some id lands in every partition")
}

fn start() -> Plane {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let plain = || ListenerConfig {
        address: "127.0.0.1:0".parse().expect("an address"),
        tls: None,
    };
    let config = DataPlaneConfig {
        shard_count: 2,
        cpus: Vec::new(),
        data_dir: dir.path().to_owned(),
        accepted_hosts: vec!["localhost".into()],
        mqtt: vec![plain()],
        amqp: vec![plain()],
        hub_created_ms: 0,
        log: dataplane_log::PartitionConfig {
            segment_bytes: 4 << 20,
            ..dataplane_log::PartitionConfig::default()
        },
        limits: Limits::default(),
        retention_interval: Duration::from_hours(1),
    };
    let listeners = dataplane::bind_listeners(&config).expect("listeners bind");
    let port = |socket: &std::os::fd::OwnedFd| {
        socket2::SockRef::from(socket)
            .local_addr()
            .ok()
            .and_then(|address| address.as_socket())
            .map(|address| address.port())
            .expect("an IP listener")
    };
    let amqp_ports = listeners
        .iter()
        .map(|shard| port(&shard.amqp[0].0))
        .collect();
    let mqtt_ports = listeners
        .iter()
        .map(|shard| port(&shard.mqtt[0].0))
        .collect();
    let identities = (0..2)
        .map(|partition| Identity {
            key: IdentityKey {
                device_id: device_in(partition),
                module_id: None,
            },
            enabled: true,
            generation_id: "1".into(),
            credentials: Credentials::Sas {
                primary: DEVICE_KEY.to_vec(),
                secondary: DEVICE_KEY.to_vec(),
            },
        })
        .collect();
    let snapshot = HubSnapshot {
        version: 1,
        hub_name: HUB.into(),
        partition_count: 2,
        identities,
        policies: vec![PolicyGrant {
            name: "service".into(),
            primary_key: KEY.into(),
            secondary_key: KEY.into(),
            device_connect: false,
            service_connect: true,
        }],
        consumer_groups: vec!["$Default".into()],
    };
    let mut subscriptions = Vec::new();
    let (control, _) = crossbeam_channel::unbounded();
    for _ in 0..2 {
        let (sender, receiver) = crossbeam_channel::unbounded();
        sender
            .send(ControlMessage::Snapshot(Arc::new(snapshot.clone())))
            .expect("the snapshot is queued");
        subscriptions.push(receiver);
    }
    let (reports, _) = crossbeam_channel::unbounded();
    let data_plane =
        DataPlane::start(config, subscriptions, &reports, listeners).expect("the shards start");
    Plane {
        running: Some(data_plane),
        amqp_ports,
        mqtt_ports,
        _dir: dir,
        _control: control,
    }
}

/// A partition receiver on one connection.
struct Reader {
    socket: TcpStream,
    input: Vec<u8>,
}

impl Reader {
    /// Connects to `port`, logs in with the policy key and attaches to `partition` at
    /// `@latest`, with an owner level if given; does not wait for the answer.
    fn attach(port: u16, partition: u32, epoch: Option<i64>) -> Self {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("the listener accepts");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a read timeout");
        let mut bytes = SASL_HEADER.to_vec();
        write_sasl_init(
            &mut bytes,
            "PLAIN",
            Some(format!("\0service\0{KEY}").as_bytes()),
            Some("localhost"),
        );
        bytes.extend_from_slice(&AMQP_HEADER);
        write_frame(
            &mut bytes,
            0,
            &OpenFields {
                container_id: "cross-shard-test",
                hostname: Some("localhost"),
                max_frame_size: 1 << 20,
                channel_max: 1,
                idle_timeout_ms: None,
                offered_capabilities: None,
                properties: None,
            },
        );
        write_frame(
            &mut bytes,
            0,
            &BeginFields {
                remote_channel: None,
                next_outgoing_id: 0,
                incoming_window: 1000,
                outgoing_window: 1000,
                handle_max: 8,
            },
        );
        let source = source(partition);
        let mut target = Vec::new();
        codec::put_descriptor(&mut target, 0x29);
        let list = Compound::begin_list(&mut target);
        codec::put_str(&mut target, "cross-shard-test");
        list.end(&mut target, 1);
        let mut properties = Vec::new();
        if let Some(epoch) = epoch {
            let map = Compound::begin_map(&mut properties);
            codec::put_sym(&mut properties, "com.microsoft:epoch");
            codec::put_long(&mut properties, epoch);
            map.end(&mut properties, 2);
        }
        write_frame(
            &mut bytes,
            0,
            &AttachFields {
                name: "reader",
                handle: 0,
                role: Role::Receiver,
                snd_settle_mode: 0,
                rcv_settle_mode: 0,
                source: Some(&source),
                target: Some(&target),
                initial_delivery_count: None,
                max_message_size: None,
                offered_capabilities: None,
                desired_capabilities: None,
                properties: epoch.is_some().then_some(&properties[..]),
            },
        );
        write_frame(
            &mut bytes,
            0,
            &FlowFields {
                next_incoming_id: Some(0),
                incoming_window: 1000,
                next_outgoing_id: 0,
                outgoing_window: 1000,
                link: Some(LinkFlowFields {
                    handle: 0,
                    delivery_count: Some(0),
                    link_credit: Some(100),
                    available: None,
                    drain: false,
                }),
                echo: false,
            },
        );
        socket.write_all(&bytes).expect("the handshake is sent");
        Self {
            socket,
            input: Vec::new(),
        }
    }

    /// The next performative the server sends, within [`TIMEOUT`].
    fn next(&mut self) -> Performative {
        let deadline = Instant::now() + TIMEOUT;
        let mut buffer = [0u8; 4096];
        loop {
            while self.input.starts_with(b"AMQP") && self.input.len() >= 8 {
                self.input.drain(..8);
            }
            if self.input.len() >= 8 {
                let size = u32::from_be_bytes(self.input[..4].try_into().expect("4 bytes"));
                let size = size as usize;
                if self.input.len() >= size {
                    let frame: Vec<u8> = self.input.drain(..size).collect();
                    let body = &frame[usize::from(frame[4]) * 4..];
                    if frame[5] == 0 && !body.is_empty() {
                        let (performative, _) =
                            dataplane_amqp::performative::decode(body).expect("a performative");
                        return performative;
                    }
                    continue;
                }
            }
            assert!(Instant::now() < deadline, "nothing from the server in time");
            match self.socket.read(&mut buffer) {
                Ok(0) => panic!("the server closed the connection"),
                Ok(read) => self.input.extend_from_slice(&buffer[..read]),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => panic!("reading: {error}"),
            }
        }
    }

    /// Waits for the reply to our attach; returns the error condition of a detach that
    /// follows it at once (a refusal), or `None` when the link is attached.
    fn attached(&mut self) -> Option<String> {
        loop {
            if let Performative::Attach(_) = self.next() {
                break;
            }
        }
        // A refusal's detach is written right behind the attach.
        self.socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("a read timeout");
        let mut buffer = [0u8; 4096];
        if let Ok(read) = self.socket.read(&mut buffer) {
            self.input.extend_from_slice(&buffer[..read]);
        }
        self.socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a read timeout");
        if self.input.is_empty() {
            return None;
        }
        self.detached()
    }

    /// Reads until a detach; returns its error condition.
    fn detached(&mut self) -> Option<String> {
        loop {
            match self.next() {
                Performative::Detach(detach) => {
                    return detach.error.map(|error| format!("{:?}", error.condition));
                }
                Performative::Flow(_) => {}
                other => panic!("expected a detach, got {other:?}"),
            }
        }
    }

    /// Reads until a transfer arrives.
    fn transfer(&mut self) {
        loop {
            match self.next() {
                Performative::Transfer(_) => return,
                Performative::Flow(_) => {}
                other => panic!("expected a transfer, got {other:?}"),
            }
        }
    }
}

/// The source terminus of `{hub}/ConsumerGroups/$Default/Partitions/{partition}` at
/// `@latest`.
fn source(partition: u32) -> Vec<u8> {
    let mut source = Vec::new();
    codec::put_descriptor(&mut source, 0x28);
    let list = Compound::begin_list(&mut source);
    codec::put_str(
        &mut source,
        &format!("amqps://localhost/{HUB}/ConsumerGroups/$Default/Partitions/{partition}"),
    );
    for _ in 0..6 {
        codec::put_null(&mut source);
    }
    let filters = Compound::begin_map(&mut source);
    codec::put_sym(&mut source, "apache.org:selector-filter:string");
    source.push(0x00);
    codec::put_sym(&mut source, "apache.org:selector-filter:string");
    codec::put_str(&mut source, "amqp.annotation.x-opt-offset > '@latest'");
    filters.end(&mut source, 2);
    list.end(&mut source, 8);
    source
}

/// Sends one QoS 1 message from the device of `partition` and waits for its PUBACK (the
/// record is committed then).
fn publish(port: u16, partition: u32) {
    let device = device_in(partition);
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("the MQTT listener accepts");
    socket.set_read_timeout(Some(TIMEOUT)).expect("a timeout");
    let expiry = dataplane::shard::now_ms() as u64 / 1000 + 3600;
    let token = dataplane_wire::sas::generate(
        &format!("localhost/devices/{device}"),
        &DEVICE_KEY,
        expiry,
        None,
    );
    let mut connect = mqttbytes::v4::Connect::new(device.clone());
    connect.set_login(format!("localhost/{device}/?api-version=2019-10-01"), token);
    let mut bytes = BytesMut::new();
    connect.write(&mut bytes).expect("CONNECT encodes");
    let mut publish = mqttbytes::v4::Publish::new(
        format!("devices/{device}/messages/events/"),
        mqttbytes::QoS::AtLeastOnce,
        b"hello".to_vec(),
    );
    publish.pkid = 1;
    publish.write(&mut bytes).expect("PUBLISH encodes");
    socket.write_all(&bytes).expect("sent");
    let mut input = BytesMut::new();
    let mut buffer = [0u8; 1024];
    loop {
        match mqttbytes::v4::read(&mut input, 1 << 20) {
            Ok(mqttbytes::v4::Packet::PubAck(_)) => return,
            Ok(mqttbytes::v4::Packet::ConnAck(connack)) => {
                assert_eq!(connack.code, mqttbytes::v4::ConnectReturnCode::Success);
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(mqttbytes::Error::InsufficientBytes(_)) => {
                let read = socket.read(&mut buffer).expect("the server answers");
                assert!(read > 0, "the MQTT connection closed");
                input.extend_from_slice(&buffer[..read]);
            }
            Err(error) => panic!("{error:?}"),
        }
    }
}

/// Setup: partition 1 (owned by shard 1) has a reader on shard 0 and one on shard 1, both
/// attached at `@latest`; then a device sends one message.
/// Expectation: both readers receive it well within the time-out. The reader on shard 0 has
/// no way to learn of it but the owner's notice: nothing polls.
#[test]
fn readers_on_every_shard_receive_a_commit_without_polling() {
    let plane = start();
    let mut remote = Reader::attach(plane.amqp_ports[0], 1, None);
    let mut local = Reader::attach(plane.amqp_ports[1], 1, None);
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
    let mut other = Reader::attach(plane.amqp_ports[1], 0, None);
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
    let mut first = Reader::attach(plane.amqp_ports[0], 1, Some(1));
    assert_eq!(first.attached(), None);
    let mut second = Reader::attach(plane.amqp_ports[1], 1, Some(2));
    assert_eq!(second.attached(), None);
    let stolen = first.detached().expect("an error condition");
    assert!(
        stolen.contains("stolen") || stolen.contains("Stolen"),
        "{stolen}"
    );
    let mut third = Reader::attach(plane.amqp_ports[0], 1, Some(1));
    let refused = third.attached().expect("a refusal");
    assert!(
        refused.contains("stolen") || refused.contains("Stolen"),
        "{refused}"
    );
    publish(plane.mqtt_ports[1], 1);
    second.transfer();
}
