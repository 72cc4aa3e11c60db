//! The edges of the MQTT listener, driven with a raw MQTT 3.1.1 client over real TLS against
//! the real binary: every kind of bad input ends that connection with a logged reason, never
//! a panic, and never costs another connection or an acknowledged message.
//!
//! Each test starts its own server (with a short CONNECT timeout for the no-CONNECT test) and
//! checks at its end that the process is still alive; dropping the server kills it.

use std::io::Read as _;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqttbytes::QoS;
use mqttbytes::v4::{self, Connect, Packet, Publish, Subscribe};
use system_tests::{Server, TlsStream, device_token, send, wait_for_close};

/// A fresh server for one test, with a short CONNECT timeout for the no-CONNECT test.
fn server() -> Server {
    Server::start_with(&[("SHOAL_DATAPLANE_CONNECT_TIMEOUT_SECS", "2")]).expect("the server starts")
}

struct Device {
    id: String,
    key: String,
}

fn new_device(server: &Server, name: &str) -> Device {
    let id = format!("{name}-{}", std::process::id());
    let key = server.create_device(&id).expect("device created");
    Device { id, key }
}

fn connect_packet(device: &Device, keep_alive: u16, clean_session: bool) -> BytesMut {
    let mut connect = Connect::new(device.id.clone());
    connect.keep_alive = keep_alive;
    connect.clean_session = clean_session;
    let token = device_token("localhost", &device.id, &device.key, 3600);
    connect.set_login(
        format!("localhost/{}/?api-version=2019-10-01", device.id),
        token,
    );
    let mut bytes = BytesMut::new();
    connect.write(&mut bytes).expect("CONNECT encodes");
    bytes
}

/// Reads one MQTT packet (blocking up to the socket's timeout).
fn read_packet(stream: &mut TlsStream, buffer: &mut BytesMut) -> Option<Packet> {
    let mut chunk = [0u8; 4096];
    loop {
        match v4::read(buffer, 1 << 20) {
            Ok(packet) => return Some(packet),
            Err(mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(error) => panic!("the server sent a malformed packet: {error:?}"),
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

/// Connects and authenticates; returns the stream after CONNACK 0.
fn connected(server: &Server, device: &Device, keep_alive: u16) -> (TlsStream, BytesMut) {
    let mut stream = server.mqtt_tls().expect("TLS connects");
    send(&mut stream, &connect_packet(device, keep_alive, false)).expect("CONNECT sent");
    let mut buffer = BytesMut::new();
    match read_packet(&mut stream, &mut buffer) {
        Some(Packet::ConnAck(connack)) => {
            assert_eq!(connack.code, v4::ConnectReturnCode::Success);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    (stream, buffer)
}

fn publish_bytes(topic: &str, qos: QoS, pkid: u16, payload: &[u8]) -> BytesMut {
    let mut publish = Publish::new(topic, qos, payload.to_vec());
    publish.pkid = pkid;
    let mut bytes = BytesMut::new();
    publish.write(&mut bytes).expect("PUBLISH encodes");
    bytes
}

fn telemetry_topic(device: &Device) -> String {
    format!("devices/{}/messages/events/", device.id)
}

fn events_of(server: &Server, device: &Device) -> Vec<serde_json::Value> {
    server
        .events()
        .expect("events readable")
        .into_iter()
        .filter(|event| {
            event["system_properties"]["iothub-connection-device-id"].as_str() == Some(&device.id)
        })
        .collect()
}

fn assert_alive(server: &mut Server) {
    assert!(server.is_running(), "the server died:\n{}", server.log());
}

fn closes(stream: &mut TlsStream) -> bool {
    wait_for_close(stream, Duration::from_secs(5)).0
}

#[test]
fn a_qos1_publish_is_acknowledged_and_lands_in_the_log() {
    // Setup: a registered device publishes one QoS 1 message.
    // Expectation: PUBACK with its packet id; the record is in the device's partition.
    let mut server = server();
    let device = new_device(&server, "ok");
    let (mut stream, mut buffer) = connected(&server, &device, 60);
    send(
        &mut stream,
        &publish_bytes(&telemetry_topic(&device), QoS::AtLeastOnce, 7, b"hi"),
    )
    .unwrap();
    match read_packet(&mut stream, &mut buffer) {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.pkid, 7),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let events = events_of(&server, &device);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["body"], "hi");
    assert_alive(&mut server);
}

#[test]
fn a_qos2_publish_closes_the_connection_and_appends_nothing() {
    let mut server = server();
    let device = new_device(&server, "qos2");
    let (mut stream, _) = connected(&server, &device, 60);
    send(
        &mut stream,
        &publish_bytes(&telemetry_topic(&device), QoS::ExactlyOnce, 1, b"x"),
    )
    .unwrap();
    assert!(closes(&mut stream), "QoS 2 must close the connection");
    assert!(events_of(&server, &device).is_empty());
    assert_alive(&mut server);
}

#[test]
fn malformed_and_truncated_packets_close_only_their_connection() {
    let mut server = server();
    let device = new_device(&server, "malformed");
    let other = new_device(&server, "bystander");
    let (mut bystander, mut bystander_buffer) = connected(&server, &other, 60);

    // A reserved packet type (0xF0) with a remaining length.
    let (mut stream, _) = connected(&server, &device, 60);
    send(&mut stream, &[0xF0, 0x02, 0x00, 0x00]).unwrap();
    assert!(
        closes(&mut stream),
        "a reserved packet type must close the connection"
    );

    // A remaining length that never ends (five continuation bytes).
    let (mut stream, _) = connected(&server, &device, 60);
    send(&mut stream, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap();
    assert!(
        closes(&mut stream),
        "a malformed remaining length must close the connection"
    );

    // Half a PUBLISH, then the client goes away.
    let (mut stream, _) = connected(&server, &device, 60);
    let whole = publish_bytes(
        &telemetry_topic(&device),
        QoS::AtLeastOnce,
        3,
        b"never whole",
    );
    send(&mut stream, &whole[..whole.len() / 2]).unwrap();
    drop(stream);

    // A PUBLISH with a topic that is not UTF-8.
    let (mut stream, _) = connected(&server, &device, 60);
    send(&mut stream, &[0x30, 0x05, 0x00, 0x02, 0xC3, 0x28, b'x']).unwrap();
    assert!(
        closes(&mut stream),
        "a non-UTF-8 topic must close the connection"
    );

    // The other device's connection is unaffected.
    send(
        &mut bystander,
        &publish_bytes(&telemetry_topic(&other), QoS::AtLeastOnce, 9, b"still here"),
    )
    .unwrap();
    match read_packet(&mut bystander, &mut bystander_buffer) {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.pkid, 9),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    assert!(
        events_of(&server, &device).is_empty(),
        "nothing from the broken connections"
    );
    assert_alive(&mut server);
}

#[test]
fn a_spoofed_device_id_in_the_topic_closes_the_connection() {
    let mut server = server();
    let device = new_device(&server, "honest");
    let victim = new_device(&server, "victim");
    let (mut stream, _) = connected(&server, &device, 60);
    send(
        &mut stream,
        &publish_bytes(&telemetry_topic(&victim), QoS::AtLeastOnce, 1, b"spoof"),
    )
    .unwrap();
    assert!(
        closes(&mut stream),
        "publishing as another device must close the connection"
    );
    assert!(events_of(&server, &victim).is_empty());
    assert!(events_of(&server, &device).is_empty());
    assert_alive(&mut server);
}

#[test]
fn topics_and_subscriptions_outside_iot_hub_close_the_connection() {
    let mut server = server();
    let device = new_device(&server, "topics");
    let (mut stream, _) = connected(&server, &device, 60);
    send(
        &mut stream,
        &publish_bytes("some/broker/topic", QoS::AtLeastOnce, 1, b"x"),
    )
    .unwrap();
    assert!(closes(&mut stream));

    let (mut stream, mut buffer) = connected(&server, &device, 60);
    let mut subscribe = Subscribe::new(
        format!("devices/{}/messages/devicebound/#", device.id),
        QoS::AtLeastOnce,
    );
    subscribe.pkid = 5;
    let mut bytes = BytesMut::new();
    subscribe.write(&mut bytes).unwrap();
    send(&mut stream, &bytes).unwrap();
    match read_packet(&mut stream, &mut buffer) {
        Some(Packet::SubAck(ack)) => assert_eq!(ack.pkid, 5),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    let mut subscribe = Subscribe::new("#", QoS::AtLeastOnce);
    subscribe.pkid = 6;
    let mut bytes = BytesMut::new();
    subscribe.write(&mut bytes).unwrap();
    send(&mut stream, &bytes).unwrap();
    assert!(
        closes(&mut stream),
        "subscribing to # must close the connection"
    );
    assert_alive(&mut server);
}

#[test]
fn an_oversized_message_closes_the_connection_and_appends_nothing() {
    let mut server = server();
    let device = new_device(&server, "big");
    let (mut stream, _) = connected(&server, &device, 60);
    let payload = vec![b'x'; 256 * 1024 + 1];
    let _ = send(
        &mut stream,
        &publish_bytes(&telemetry_topic(&device), QoS::AtLeastOnce, 1, &payload),
    );
    assert!(
        closes(&mut stream),
        "a message over 256 KiB must close the connection"
    );
    assert!(events_of(&server, &device).is_empty());
    assert!(
        server.log().contains("larger than 256 KiB"),
        "the refusal is logged:\n{}",
        server.log()
    );
    assert_alive(&mut server);
}

#[test]
fn keep_alive_is_enforced_at_one_and_a_half_times_its_value() {
    let mut server = server();
    let device = new_device(&server, "keepalive");
    let (mut stream, _) = connected(&server, &device, 1);
    let started = Instant::now();
    let (closed, _) = wait_for_close(&mut stream, Duration::from_secs(6));
    let elapsed = started.elapsed();
    assert!(
        closed,
        "a silent connection with keep-alive 1 s must be closed"
    );
    assert!(
        elapsed >= Duration::from_millis(1300) && elapsed < Duration::from_secs(4),
        "closed after {elapsed:?}, expected about 1.5 s"
    );

    // Pings keep a connection open past its keep-alive.
    let (mut stream, mut buffer) = connected(&server, &device, 1);
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(700));
        send(&mut stream, &[0xC0, 0x00]).unwrap();
        assert!(matches!(
            read_packet(&mut stream, &mut buffer),
            Some(Packet::PingResp)
        ));
    }
    assert_alive(&mut server);
}

#[test]
fn a_second_connection_with_the_same_client_id_closes_the_first() {
    let mut server = server();
    let device = new_device(&server, "twice");
    let (mut first, _) = connected(&server, &device, 60);
    let (mut second, mut buffer) = connected(&server, &device, 60);
    assert!(closes(&mut first), "the older connection must be closed");
    send(
        &mut second,
        &publish_bytes(&telemetry_topic(&device), QoS::AtLeastOnce, 2, b"second"),
    )
    .unwrap();
    assert!(matches!(
        read_packet(&mut second, &mut buffer),
        Some(Packet::PubAck(_))
    ));
    assert_alive(&mut server);
}

#[test]
fn a_connection_that_never_sends_connect_is_closed_after_the_timeout() {
    let mut server = server();
    let mut stream = server.mqtt_tls().unwrap();
    // Complete the TLS handshake, then stay silent.
    stream.conn.complete_io(&mut stream.sock).unwrap();
    let started = Instant::now();
    let (closed, _) = wait_for_close(&mut stream, Duration::from_secs(8));
    assert!(closed, "a connection without CONNECT must be closed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );

    // A TCP connection that never even starts TLS is closed too.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", server.port("mqtt_port"))).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut byte = [0u8; 1];
    let started = Instant::now();
    let result = raw.read(&mut byte);
    assert!(
        matches!(result, Ok(0) | Err(_)),
        "expected close, got {result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_alive(&mut server);
}

#[test]
fn bad_credentials_get_connack_refusals() {
    let mut server = server();
    let device = new_device(&server, "creds");
    let cases: Vec<(Connect, v4::ConnectReturnCode)> = vec![
        {
            // Signed with another key.
            let mut connect = Connect::new(device.id.clone());
            connect.set_login(
                format!("localhost/{}/?api-version=2019-10-01", device.id),
                device_token(
                    "localhost",
                    &device.id,
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                    60,
                ),
            );
            (connect, v4::ConnectReturnCode::NotAuthorized)
        },
        {
            // Expired.
            let mut connect = Connect::new(device.id.clone());
            connect.set_login(
                format!("localhost/{}/?api-version=2019-10-01", device.id),
                dataplane_wire::sas::generate(
                    &format!("localhost/devices/{}", device.id),
                    &dataplane_wire::sas::decode_key(&device.key).unwrap(),
                    1_000_000,
                    None,
                ),
            );
            (connect, v4::ConnectReturnCode::NotAuthorized)
        },
        {
            // Not a token at all.
            let mut connect = Connect::new(device.id.clone());
            connect.set_login(
                format!("localhost/{}/?api-version=2019-10-01", device.id),
                "hunter2".to_owned(),
            );
            (connect, v4::ConnectReturnCode::BadUserNamePassword)
        },
        {
            // An id outside the allowed characters.
            let mut connect = Connect::new("bad id with spaces");
            connect.set_login(
                "localhost/bad id/?api-version=2019-10-01".to_owned(),
                "x".to_owned(),
            );
            (connect, v4::ConnectReturnCode::BadClientId)
        },
    ];
    for (connect, expected) in cases {
        let mut stream = server.mqtt_tls().unwrap();
        let mut bytes = BytesMut::new();
        connect.write(&mut bytes).unwrap();
        send(&mut stream, &bytes).unwrap();
        let mut buffer = BytesMut::new();
        match read_packet(&mut stream, &mut buffer) {
            Some(Packet::ConnAck(connack)) => assert_eq!(connack.code, expected),
            other => panic!("expected CONNACK {expected:?}, got {other:?}"),
        }
        assert!(closes(&mut stream));
    }
    assert_alive(&mut server);
}

#[test]
fn a_will_is_sent_as_telemetry_when_the_connection_drops_without_disconnect() {
    // Setup: a device connects with a will on its telemetry topic, then its TCP connection
    // drops; a second device with a will disconnects cleanly.
    // Expectation: the first will lands as telemetry stamped iothub-MessageType=Will; the
    // second is discarded, as MQTT and IoT Hub specify.
    let mut server = server();
    for (name, clean) in [("will-dropped", false), ("will-clean", true)] {
        let device = new_device(&server, name);
        let mut connect = Connect::new(device.id.clone());
        connect.keep_alive = 60;
        connect.clean_session = false;
        connect.last_will = Some(v4::LastWill::new(
            telemetry_topic(&device),
            b"gone".to_vec(),
            QoS::AtLeastOnce,
            false,
        ));
        connect.set_login(
            format!("localhost/{}/?api-version=2019-10-01", device.id),
            device_token("localhost", &device.id, &device.key, 3600),
        );
        let mut bytes = BytesMut::new();
        connect.write(&mut bytes).unwrap();
        let mut stream = server.mqtt_tls().unwrap();
        send(&mut stream, &bytes).unwrap();
        let mut buffer = BytesMut::new();
        assert!(matches!(
            read_packet(&mut stream, &mut buffer),
            Some(Packet::ConnAck(_))
        ));
        if clean {
            send(&mut stream, &[0xE0, 0x00]).unwrap();
            assert!(closes(&mut stream));
        } else {
            stream.sock.shutdown(std::net::Shutdown::Both).unwrap();
        }
        drop(stream);
        let deadline = Instant::now() + Duration::from_secs(5);
        let events = loop {
            let events = events_of(&server, &device);
            if !events.is_empty() || Instant::now() > deadline {
                break events;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if clean {
            assert!(events.is_empty(), "a clean DISCONNECT discards the will");
        } else {
            assert_eq!(events.len(), 1);
            assert_eq!(events[0]["body"], "gone");
            assert_eq!(events[0]["properties"]["iothub-MessageType"], "Will");
        }
    }
    assert_alive(&mut server);
}

/// Publishes QoS 1 messages with up to `window` in flight until the connection ends (the
/// server is killed); returns the payloads the server acknowledged.
fn publish_until_cut(server: &Server, device: &Device, round: u32, window: u64) -> Vec<String> {
    let (mut stream, mut buffer) = connected(server, device, 60);
    let topic = telemetry_topic(device);
    let payload = |sequence: u64| format!("{}-r{round}-{sequence}", device.id);
    let packet_id = |sequence: u64| (sequence % 65_535 + 1) as u16;
    let mut in_flight = std::collections::HashMap::new();
    let mut acknowledged = Vec::new();
    let mut next = 0u64;
    loop {
        while (in_flight.len() as u64) < window {
            let body = payload(next);
            if send(
                &mut stream,
                &publish_bytes(&topic, QoS::AtLeastOnce, packet_id(next), body.as_bytes()),
            )
            .is_err()
            {
                return acknowledged;
            }
            in_flight.insert(packet_id(next), body);
            next += 1;
        }
        match read_packet(&mut stream, &mut buffer) {
            Some(Packet::PubAck(ack)) => {
                let body = in_flight
                    .remove(&ack.pkid)
                    .expect("a PUBACK answers a PUBLISH in flight");
                acknowledged.push(body);
            }
            Some(other) => panic!("expected PUBACK, got {other:?}"),
            None => return acknowledged,
        }
    }
}

#[test]
fn acknowledged_messages_survive_the_server_being_killed() {
    // Setup: four devices (spread over the partitions) publish QoS 1 with eight in flight
    // each; the server is killed with SIGKILL mid-stream, restarted, and it happens again.
    // Expectation: after each restart every acknowledged message is in the log, none twice,
    // and each partition's sequence numbers run from 0 without a gap.
    let mut server = server();
    let devices: Vec<Device> = (0..4)
        .map(|i| new_device(&server, &format!("crash{i}")))
        .collect();
    let mut acknowledged = Vec::new();
    for round in 0..2 {
        let acked_this_round = std::thread::scope(|scope| {
            let handles: Vec<_> = devices
                .iter()
                .map(|device| {
                    let server = &server;
                    scope.spawn(move || publish_until_cut(server, device, round, 8))
                })
                .collect();
            std::thread::sleep(Duration::from_millis(1500));
            // SIGKILL by pid: the publishers still borrow the server handle.
            let killed = std::process::Command::new("kill")
                .args(["-KILL", &server.pid().to_string()])
                .status()
                .expect("kill runs");
            assert!(killed.success());
            handles
                .into_iter()
                .flat_map(|handle| handle.join().expect("publisher thread"))
                .collect::<Vec<_>>()
        });
        assert!(
            acked_this_round.len() > 100,
            "round {round}: only {} acknowledged before the kill",
            acked_this_round.len()
        );
        acknowledged.extend(acked_this_round);
        server.kill(); // reaps the killed process
        server
            .start_again()
            .expect("the server restarts after SIGKILL");

        let events = server.events().expect("events readable");
        let mut bodies = std::collections::HashSet::new();
        let mut by_partition = std::collections::BTreeMap::<u64, Vec<u64>>::new();
        for event in &events {
            let body = event["body"].as_str().expect("a text body").to_owned();
            assert!(bodies.insert(body.clone()), "{body} stored twice");
            by_partition
                .entry(event["partition"].as_u64().expect("partition"))
                .or_default()
                .push(event["sequence_number"].as_u64().expect("sequence"));
        }
        for (partition, sequences) in &by_partition {
            let expected: Vec<u64> = (0..sequences.len() as u64).collect();
            assert_eq!(sequences, &expected, "partition {partition} has a gap");
        }
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|body| !bodies.contains(*body))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged messages lost, e.g. {:?}",
            lost.len(),
            acknowledged.len(),
            &lost[..lost.len().min(3)]
        );
    }
    assert_alive(&mut server);
}
