//! The data plane started in-process for tests, a minimal AMQP client for its Event Hubs
//! endpoint, and a device that sends over MQTT.
//!
//! The data plane has two shards and plain-TCP listeners bound to port 0, so each shard
//! listens on its own ports and a test picks the shard a connection lands on. Partition `p`
//! of the hub's two is owned by shard `p % 2`.

#![allow(dead_code, reason = "each test file uses a part of the helpers")]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dataplane::{DataPlane, DataPlaneConfig, Limits, ListenerConfig};
use dataplane_amqp::codec::{self, Compound};
use dataplane_amqp::frame::{self, AMQP_HEADER, SASL_HEADER};
use dataplane_amqp::message::Sections;
use dataplane_amqp::performative::{
    AttachFields, BeginFields, Encode as _, FlowFields, LinkFlowFields, OpenFields, Role,
    TransferFields, write_frame, write_sasl_init,
};
use fe2o3_amqp_types::performatives::Performative;
use fe2o3_amqp_types::primitives::SimpleValue;
use schemas::plane::{
    ControlMessage, Credentials, HubSnapshot, Identity, IdentityKey, PolicyGrant,
};

pub const HUB: &str = "hub";
/// The `service` policy's key (both keys).
pub const KEY: &str = "Y3Jvc3Mtc2hhcmQtcmVhZGVycy10ZXN0LWtleS0zMiE=";
const DEVICE_KEY: [u8; 32] = [7; 32];
const TIMEOUT: Duration = Duration::from_secs(10);

/// A data plane with two shards and the ports each shard listens on.
pub struct Plane {
    running: Option<DataPlane>,
    pub amqp_ports: Vec<u16>,
    pub mqtt_ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Drop for Plane {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
    }
}

/// A device id that lands in `partition` of 2.
pub fn device_in(partition: u32) -> String {
    (0..1000)
        .map(|index| format!("device-{index}"))
        .find(|id| dataplane::shard::placement::partition_of(id, 2) == partition)
        .expect("some id lands in every partition")
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    dataplane::shard::now_ms() as u64 / 1000
}

pub fn start() -> Plane {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let plain = || ListenerConfig {
        address: "127.0.0.1:0".parse().expect("an address"),
        tls: None,
    };
    let config = DataPlaneConfig {
        spin_before_park: std::time::Duration::ZERO,
        applied_versions: None,
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
    let snapshot = Arc::new(HubSnapshot {
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
    });
    let subscriptions = (0..2)
        .map(|_| {
            let (sender, receiver) = crossbeam_channel::unbounded();
            sender
                .send(ControlMessage::Snapshot(Arc::clone(&snapshot)))
                .expect("the snapshot is queued");
            receiver
        })
        .collect();
    let (reports, _) = crossbeam_channel::unbounded();
    let data_plane =
        DataPlane::start(config, subscriptions, &reports, listeners).expect("the shards start");
    Plane {
        running: Some(data_plane),
        amqp_ports,
        mqtt_ports,
        _dir: dir,
    }
}

/// How a client logs in.
#[derive(Debug, Clone, Copy)]
pub enum Login {
    /// SASL PLAIN with the `service` policy's key: no put-token needed.
    PolicyKey,
    /// SASL ANONYMOUS: put-tokens on `$cbs` authorize.
    Anonymous,
}

/// Handles this client gives its links.
pub const CBS_SENDER: u32 = 1;
pub const CBS_RECEIVER: u32 = 2;

/// One AMQP connection with one session (channel 0).
pub struct Client {
    socket: TcpStream,
    input: Vec<u8>,
    next_delivery: u32,
}

impl Client {
    /// Connects to `port` and opens a connection and a session; does not wait for answers.
    pub fn open(port: u16, login: Login) -> Self {
        let socket = TcpStream::connect(("127.0.0.1", port)).expect("the listener accepts");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a read timeout");
        let mut bytes = SASL_HEADER.to_vec();
        match login {
            Login::PolicyKey => {
                let response = format!("\0service\0{KEY}");
                write_sasl_init(
                    &mut bytes,
                    "PLAIN",
                    Some(response.as_bytes()),
                    Some("localhost"),
                );
            }
            Login::Anonymous => {
                write_sasl_init(&mut bytes, "ANONYMOUS", Some(&[]), Some("localhost"));
            }
        }
        bytes.extend_from_slice(&AMQP_HEADER);
        write_frame(
            &mut bytes,
            0,
            &OpenFields {
                container_id: "dataplane-test",
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
        let mut client = Self {
            socket,
            input: Vec::new(),
            next_delivery: 0,
        };
        client.send(&bytes);
        client
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).expect("the server reads");
    }

    /// Attaches a receiver with `handle` to `partition` at `@latest` (with an owner level if
    /// given) and grants it credit; does not wait for the answer.
    pub fn attach_partition(&mut self, handle: u32, partition: u32, epoch: Option<i64>) {
        let mut properties = Vec::new();
        if let Some(epoch) = epoch {
            let map = Compound::begin_map(&mut properties);
            codec::put_sym(&mut properties, "com.microsoft:epoch");
            codec::put_long(&mut properties, epoch);
            map.end(&mut properties, 2);
        }
        let address =
            format!("amqps://localhost/{HUB}/ConsumerGroups/$Default/Partitions/{partition}");
        let source = terminus(
            0x28,
            &address,
            Some("amqp.annotation.x-opt-offset > '@latest'"),
        );
        let target = terminus(0x29, &format!("receiver-{handle}"), None);
        let mut bytes = Vec::new();
        write_frame(
            &mut bytes,
            0,
            &AttachFields {
                name: &format!("reader-{handle}"),
                handle,
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
        write_credit(&mut bytes, handle, 100);
        self.send(&bytes);
    }

    /// Attaches the `$cbs` link pair and waits until the server answered both and granted
    /// credit for requests.
    pub fn attach_cbs(&mut self) {
        let mut bytes = Vec::new();
        for (handle, role) in [(CBS_SENDER, Role::Sender), (CBS_RECEIVER, Role::Receiver)] {
            let node = terminus(0x28, "$cbs", None);
            let other = terminus(0x29, "$cbs", None);
            write_frame(
                &mut bytes,
                0,
                &AttachFields {
                    name: &format!("cbs-{handle}"),
                    handle,
                    role,
                    snd_settle_mode: 0,
                    rcv_settle_mode: 0,
                    source: Some(&node),
                    target: Some(&other),
                    initial_delivery_count: (role == Role::Sender).then_some(0),
                    max_message_size: None,
                    offered_capabilities: None,
                    desired_capabilities: None,
                    properties: None,
                },
            );
        }
        write_credit(&mut bytes, CBS_RECEIVER, 10);
        self.send(&bytes);
        let mut attaches = 0;
        let mut credited = false;
        while attaches < 2 || !credited {
            match self.next() {
                Performative::Attach(_) => attaches += 1,
                Performative::Flow(flow) => {
                    credited |= flow.link_credit.is_some_and(|credit| credit > 0);
                }
                _ => {}
            }
        }
    }

    /// Puts a token for the `$Default` consumer group that expires at `expiry_secs`; returns
    /// the response's `status-code`.
    pub fn put_token(&mut self, expiry_secs: u64) -> i32 {
        let audience = format!("sb://localhost/{HUB}/consumergroups/$Default");
        let token =
            dataplane_wire::sas::generate(&audience, KEY.as_bytes(), expiry_secs, Some("service"));
        let mut message = Vec::new();
        codec::put_descriptor(&mut message, 0x73);
        let list = Compound::begin_list(&mut message);
        codec::put_ulong(&mut message, u64::from(self.next_delivery));
        list.end(&mut message, 1);
        codec::put_descriptor(&mut message, 0x74);
        let map = Compound::begin_map(&mut message);
        for (key, value) in [
            ("operation", "put-token"),
            ("type", "servicebus.windows.net:sastoken"),
            ("name", audience.as_str()),
        ] {
            codec::put_str(&mut message, key);
            codec::put_str(&mut message, value);
        }
        map.end(&mut message, 6);
        codec::put_descriptor(&mut message, 0x77);
        codec::put_str(&mut message, &token);
        let delivery = self.next_delivery;
        self.next_delivery += 1;
        let tag = delivery.to_be_bytes();
        let mut bytes = Vec::new();
        let start = frame::begin_frame(&mut bytes, frame::TYPE_AMQP, 0);
        TransferFields {
            handle: CBS_SENDER,
            delivery_id: Some(delivery),
            delivery_tag: Some(&tag),
            message_format: Some(0),
            settled: Some(false),
            more: false,
            aborted: false,
        }
        .encode(&mut bytes);
        bytes.extend_from_slice(&message);
        frame::end_frame(&mut bytes, start);
        self.send(&bytes);
        loop {
            let (performative, payload) = self.next_with_payload();
            if let Performative::Transfer(_) = performative {
                let sections = Sections::split(&payload).expect("a message");
                let properties = sections
                    .decode_application_properties()
                    .expect("application properties");
                return properties
                    .iter()
                    .find_map(|(key, value)| match (key.as_str(), value) {
                        ("status-code", SimpleValue::Int(code)) => Some(*code),
                        _ => None,
                    })
                    .expect("a status-code");
            }
        }
    }

    /// The next performative the server sends, within the time-out.
    pub fn next(&mut self) -> Performative {
        self.next_with_payload().0
    }

    /// The next performative and what follows it in its frame (a transfer's message).
    pub fn next_with_payload(&mut self) -> (Performative, Vec<u8>) {
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
                    if frame[5] == frame::TYPE_AMQP && !body.is_empty() {
                        let (performative, length) =
                            dataplane_amqp::performative::decode(body).expect("a performative");
                        return (performative, body[length..].to_vec());
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

    /// Waits for the reply to an attach; returns the error condition of a detach that follows
    /// it at once (a refusal), or `None` when the link is attached.
    pub fn attached(&mut self) -> Option<String> {
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
        loop {
            if self.input.is_empty() {
                return None;
            }
            match self.next() {
                Performative::Detach(detach) => return detach.error.map(|error| condition(&error)),
                Performative::Flow(_) => {}
                other => panic!("expected a detach or nothing, got {other:?}"),
            }
        }
    }

    /// Reads until a detach; returns its error condition.
    pub fn detached(&mut self) -> Option<String> {
        loop {
            match self.next() {
                Performative::Detach(detach) => return detach.error.map(|error| condition(&error)),
                Performative::Flow(_) => {}
                other => panic!("expected a detach, got {other:?}"),
            }
        }
    }

    /// Reads until a transfer on `handle` of ours arrives (the server's handles mirror
    /// nothing, so any transfer counts).
    pub fn transfer(&mut self) {
        loop {
            match self.next() {
                Performative::Transfer(_) => return,
                Performative::Flow(_) => {}
                other => panic!("expected a transfer, got {other:?}"),
            }
        }
    }
}

fn condition(error: &fe2o3_amqp_types::definitions::Error) -> String {
    match serde_amqp::to_value(&error.condition) {
        Ok(serde_amqp::Value::Symbol(symbol)) => symbol.0,
        _ => format!("{:?}", error.condition),
    }
}

/// A flow that opens the session window and grants `credit` on `handle`.
fn write_credit(bytes: &mut Vec<u8>, handle: u32, credit: u32) {
    write_frame(
        bytes,
        0,
        &FlowFields {
            next_incoming_id: Some(0),
            incoming_window: 1000,
            next_outgoing_id: 0,
            outgoing_window: 1000,
            link: Some(LinkFlowFields {
                handle,
                delivery_count: Some(0),
                link_credit: Some(credit),
                available: None,
                drain: false,
            }),
            echo: false,
        },
    );
}

/// A source (0x28) or target (0x29) terminus with an address and, optionally, a selector.
fn terminus(descriptor: u8, address: &str, selector: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    codec::put_descriptor(&mut out, descriptor);
    let list = Compound::begin_list(&mut out);
    codec::put_str(&mut out, address);
    let Some(selector) = selector else {
        list.end(&mut out, 1);
        return out;
    };
    // durable, expiry-policy, timeout, dynamic, dynamic-node-properties, distribution-mode
    for _ in 0..6 {
        codec::put_null(&mut out);
    }
    let filters = Compound::begin_map(&mut out);
    codec::put_sym(&mut out, "apache.org:selector-filter:string");
    out.push(0x00);
    codec::put_sym(&mut out, "apache.org:selector-filter:string");
    codec::put_str(&mut out, selector);
    filters.end(&mut out, 2);
    list.end(&mut out, 8);
    out
}

/// Sends one QoS 1 message from the device of `partition` and waits for its PUBACK (the
/// record is committed then).
pub fn publish(port: u16, partition: u32) {
    let device = device_in(partition);
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("the MQTT listener accepts");
    socket.set_read_timeout(Some(TIMEOUT)).expect("a timeout");
    let token = dataplane_wire::sas::generate(
        &format!("localhost/devices/{device}"),
        &DEVICE_KEY,
        now_secs() + 3600,
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
