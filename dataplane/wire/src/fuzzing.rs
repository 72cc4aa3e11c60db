//! Entry points of the cargo-fuzz targets `mqtt_packet` and `iothub_topic` (in
//! `dataplane/fuzz`, built with the `fuzzing` feature). Each asserts invariants, not only the
//! absence of panics. The tests below drive the same entry points with golden vectors of what
//! the device SDK sends and with proptest inputs, so they also run on stable in every
//! `cargo test`.

use crate::bytes::BytesMut;
use crate::iothub::{
    ClientId, DeliveryTopic, MessageProperties, PublishTopic, Subscription, SystemProperty,
    Username, authorize, parse_expiry_ms, write_c2d_topic, write_desired_patch_topic,
    write_method_request_topic, write_module_input_topic, write_telemetry_topic,
    write_twin_response_topic,
};
use crate::mqtt::{Decoded, Decoder, Error, Packet};
use crate::sas::SasToken;

/// The bound `mqtt_packet` decodes with: small enough that the fuzzer reaches it, large enough
/// for every fixed-size packet.
pub const PACKET_BYTES_MAX: usize = 1024;

/// `mqtt_packet`: the first byte picks a read size, the rest is a device's byte stream.
///
/// Invariants: every decoded packet fits the bound, and an incomplete one never asks to
/// buffer past it nor loses bytes; every decoded PUBLISH re-encodes to exactly its bytes;
/// decoding in pieces gives the same packets and the same error as decoding whole; every
/// error has a reason and a reaction.
pub fn mqtt_packet(input: &[u8]) {
    let Some((&piece_bytes, stream)) = input.split_first() else {
        return;
    };
    let decoder = Decoder::new(PACKET_BYTES_MAX);
    let whole = decode_in_pieces(decoder, stream, stream.len().max(1));
    let pieces = decode_in_pieces(decoder, stream, usize::from(piece_bytes % 16) + 1);
    assert_eq!(
        whole, pieces,
        "the read boundaries changed what was decoded"
    );
}

/// Feeds `stream` to `decoder` `piece_bytes` at a time, as reads would, checking every answer
/// against the decoder's invariants. Returns the packets, and the error that ended the
/// stream.
pub fn decode_in_pieces(
    decoder: Decoder,
    stream: &[u8],
    piece_bytes: usize,
) -> (Vec<Packet>, Option<Error>) {
    let mut buffer = BytesMut::new();
    let mut packets = Vec::new();
    let mut consumed = 0;
    for piece in stream.chunks(piece_bytes) {
        buffer.extend_from_slice(piece);
        loop {
            let buffered = buffer.len();
            match decoder.decode(&mut buffer) {
                Ok(Decoded::Packet(packet)) => {
                    let frame = &stream[consumed..consumed + buffered - buffer.len()];
                    consumed += frame.len();
                    assert!(frame.len() <= decoder.packet_bytes_max());
                    if let Packet::Publish(publish) = &packet {
                        let mut again = Vec::new();
                        publish
                            .encode(&mut again)
                            .expect("a decoded PUBLISH encodes");
                        assert_eq!(again, frame, "the PUBLISH did not re-encode to its bytes");
                    }
                    packets.push(packet);
                }
                Ok(Decoded::Incomplete { bytes_needed }) => {
                    assert!(bytes_needed >= 1);
                    assert!(buffer.len() + bytes_needed <= decoder.packet_bytes_max());
                    assert_eq!(buffer.len(), buffered, "an incomplete packet lost bytes");
                    break;
                }
                Err(error) => {
                    assert!(!error.to_string().is_empty());
                    let _ = error.reaction();
                    return (packets, Some(error));
                }
            }
        }
    }
    (packets, None)
}

/// `iothub_topic`: the input, cut at 0xFF bytes, becomes a [`TopicCase`].
pub fn iothub_topic(input: &[u8]) {
    TopicCase::from_bytes(input).check();
}

/// Values to parse, and to build topics from and parse back.
#[derive(Debug, Clone, Default)]
pub struct TopicCase {
    /// Parsed as every kind of text the crate reads.
    pub text: String,
    /// The identity the topics are built for; cases with an invalid one only parse.
    pub client_id: String,
    /// A module input name.
    pub input_name: String,
    /// A direct method name.
    pub method: String,
    /// Seeds the request id, which the server writes in hex.
    pub rid: u64,
    /// A twin response status.
    pub status: u16,
    /// A twin version.
    pub version: u64,
    /// System properties; later duplicates are dropped.
    pub system: Vec<(SystemProperty, String)>,
    /// Application properties; empty names and names that are system keys are dropped.
    pub application: Vec<(String, String)>,
}

impl TopicCase {
    /// Splits `input` at 0xFF: text, client id, input name, method, numbers, then name and
    /// value fields in turn. A name field starting with 0xFE names the system property of its
    /// next byte.
    pub fn from_bytes(input: &[u8]) -> Self {
        let mut fields = input.split(|&byte| byte == 0xFF);
        let mut text = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
        let mut case = Self {
            text: text(),
            client_id: text(),
            input_name: text(),
            method: text(),
            ..Self::default()
        };
        let mut numbers = [0u8; 18];
        if let Some(field) = fields.next() {
            let len = field.len().min(numbers.len());
            numbers[..len].copy_from_slice(&field[..len]);
        }
        case.rid = u64::from_le_bytes(numbers[..8].try_into().expect("8 bytes"));
        case.status = u16::from_le_bytes(numbers[8..10].try_into().expect("2 bytes"));
        case.version = u64::from_le_bytes(numbers[10..].try_into().expect("8 bytes"));
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            let value = String::from_utf8_lossy(value).into_owned();
            match name {
                [0xFE, index, ..] => {
                    let property = SystemProperty::ALL[usize::from(*index) % SystemProperty::COUNT];
                    case.system.push((property, value));
                }
                _ => case
                    .application
                    .push((String::from_utf8_lossy(name).into_owned(), value)),
            }
        }
        case
    }

    /// Parses `text` every way, then checks the round trips of every builder.
    pub fn check(&self) {
        self.parse_text();
        let Ok(client) = ClientId::parse(&self.client_id) else {
            return;
        };
        self.check_telemetry(&client);
        self.check_delivery(&client);
    }

    fn parse_text(&self) {
        let text = self.text.as_str();
        let client = ClientId::parse("dev1").expect("a valid id");
        let _ = PublishTopic::parse(text, &client);
        let _ = Subscription::parse(text, &client);
        let _ = DeliveryTopic::parse(text);
        let _ = Username::parse(text, &self.client_id);
        let _ = parse_expiry_ms(text);
        if let Ok(token) = SasToken::parse(text) {
            let _ = authorize(&token, &client, &["localhost"]);
        }
        if let Ok(properties) = MessageProperties::parse(text) {
            assert_eq!(
                properties.application().count(),
                properties.application_count()
            );
            let _ = properties.expiry_ms();
        }
    }

    /// A telemetry topic written for `client` parses for it, not for another identity, and
    /// its bag parses back to the values written, sized as IoT Hub sizes them.
    fn check_telemetry(&self, client: &ClientId<'_>) {
        let mut system: Vec<(SystemProperty, &str)> = Vec::new();
        for (property, value) in &self.system {
            if system.iter().all(|(seen, _)| seen != property) {
                system.push((*property, value));
            }
        }
        let application: Vec<(&str, &str)> = self
            .application
            .iter()
            .filter(|(name, _)| {
                !name.is_empty() && SystemProperty::from_key(name.as_bytes()).is_none()
            })
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let mut topic = String::new();
        let mut writer = write_telemetry_topic(&mut topic, client);
        for (property, value) in &system {
            writer.system(*property, value);
        }
        for (name, value) in &application {
            writer.application(name, value);
        }
        let Ok(PublishTopic::Telemetry { properties }) = PublishTopic::parse(&topic, client) else {
            panic!("a written telemetry topic did not parse: {topic}");
        };
        assert!(!properties.contains('/'), "a raw '/' in {properties}");
        let other_id = if client.device_id() == "x" { "y" } else { "x" };
        let other = ClientId::parse(other_id).expect("a valid id");
        assert!(PublishTopic::parse(&topic, &other).is_err());
        let Ok(parsed) = MessageProperties::parse(properties) else {
            // Too many, or too long: refused by the bounds, not a round-trip failure.
            return;
        };
        for (property, value) in &system {
            assert_eq!(parsed.get(*property), Some(*value));
        }
        assert_eq!(parsed.system_properties().count(), system.len());
        let parsed_application: Vec<_> = parsed.application().collect();
        assert_eq!(parsed_application.len(), application.len());
        for ((name, value), (parsed_name, parsed_value)) in
            application.iter().zip(&parsed_application)
        {
            assert_eq!(
                (*name, *value),
                (parsed_name.as_ref(), parsed_value.as_ref())
            );
        }
        let expected_bytes = system.iter().map(|(_, value)| value.len()).sum::<usize>()
            + application
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>();
        assert_eq!(parsed.message_bytes(0), expected_bytes);
    }

    /// Every topic the server writes to a device parses back, on the device side, to the
    /// values it was written from.
    fn check_delivery(&self, client: &ClientId<'_>) {
        let device_id = client.device_id();
        let rid = format!("{:x}", self.rid);
        let mut topic = String::new();

        write_c2d_topic(&mut topic, device_id).application("k", &self.method);
        let Ok(DeliveryTopic::CloudToDevice {
            device_id: parsed_id,
            properties,
        }) = DeliveryTopic::parse(&topic)
        else {
            panic!("a written C2D topic did not parse: {topic}");
        };
        assert_eq!(parsed_id, device_id);
        if let Ok(parsed) = MessageProperties::parse(properties) {
            let (name, value) = parsed.application().next().expect("one property");
            assert_eq!((name.as_ref(), value.as_ref()), ("k", self.method.as_str()));
        }

        if let Some(module_id) = client.module_id() {
            write_module_input_topic(&mut topic, device_id, module_id, &self.input_name);
            assert_eq!(
                DeliveryTopic::parse(&topic),
                Ok(DeliveryTopic::ModuleInput {
                    device_id,
                    module_id,
                    input: self.input_name.as_str().into(),
                    properties: "",
                })
            );
        }

        write_method_request_topic(&mut topic, &self.method, &rid);
        assert_eq!(
            DeliveryTopic::parse(&topic),
            Ok(DeliveryTopic::MethodRequest {
                method: self.method.as_str().into(),
                rid: &rid,
            })
        );

        for version in [None, Some(self.version)] {
            write_twin_response_topic(&mut topic, self.status, &rid, version);
            assert_eq!(
                DeliveryTopic::parse(&topic),
                Ok(DeliveryTopic::TwinResponse {
                    status: self.status,
                    rid: &rid,
                    version,
                })
            );
        }

        write_desired_patch_topic(&mut topic, self.version);
        assert_eq!(
            DeliveryTopic::parse(&topic),
            Ok(DeliveryTopic::DesiredPatch {
                version: self.version
            })
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::codec::put_fixed_header;
    use proptest::prelude::*;

    fn put_string(out: &mut Vec<u8>, value: &str) {
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }

    /// A device's session as the SDK opens it: CONNECT, SUBSCRIBE for C2D, a
    /// telemetry PUBLISH with the observed topic, a PUBACK, PINGREQ, UNSUBSCRIBE, DISCONNECT.
    fn sdk_session() -> Vec<u8> {
        let mut stream = Vec::new();
        let mut body = Vec::new();
        put_string(&mut body, "MQTT");
        body.extend_from_slice(&[0x04, 0xC0, 0x00, 0x3C]);
        put_string(&mut body, "dev1");
        put_string(&mut body, "localhost/dev1/?api-version=2019-10-01");
        put_string(
            &mut body,
            "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=FZOlNa5AJB6q3ivl3f%2FLUonFxr5QRUBtgfHSRBWHMbo%3D&se=1700000000",
        );
        put_fixed_header(&mut stream, 0x10, body.len());
        stream.extend_from_slice(&body);
        let filter = "devices/dev1/messages/devicebound/#";
        put_fixed_header(&mut stream, 0x82, 2 + 2 + filter.len() + 1);
        stream.extend_from_slice(&[0x00, 0x05]);
        put_string(&mut stream, filter);
        stream.push(0x01);
        let topic = "devices/dev1/messages/events/%24.mid=mid-1&%24.cid=cid-1&%24.uid=uid&%24.ct=application%2Fjson&%24.ce=utf-8&%24.exp=2030-01-01T00%3A00%3A00%2B00%3A00&a%20b=x%2Fy%26z&b=2";
        put_fixed_header(&mut stream, 0x32, 2 + topic.len() + 2 + 8);
        put_string(&mut stream, topic);
        stream.extend_from_slice(&[0x00, 0x01]);
        stream.extend_from_slice(b"{\"t\":21}");
        stream.extend_from_slice(&[0x40, 0x02, 0x00, 0x01, 0xC0, 0x00]);
        put_fixed_header(&mut stream, 0xA2, 2 + 2 + filter.len());
        stream.extend_from_slice(&[0x00, 0x06]);
        put_string(&mut stream, filter);
        stream.extend_from_slice(&[0xE0, 0x00]);
        stream
    }

    #[test]
    fn the_sdk_session_decodes_whole_at_every_read_size() {
        let stream = sdk_session();
        for piece_bytes in 0..16u8 {
            let mut input = vec![piece_bytes];
            input.extend_from_slice(&stream);
            mqtt_packet(&input);
        }
        let (packets, error) = decode_in_pieces(Decoder::default(), &stream, 7);
        assert_eq!(error, None);
        let types: Vec<_> = packets.iter().map(Packet::packet_type).collect();
        assert_eq!(
            types.iter().map(|t| t.name()).collect::<Vec<_>>(),
            [
                "CONNECT",
                "SUBSCRIBE",
                "PUBLISH",
                "PUBACK",
                "PINGREQ",
                "UNSUBSCRIBE",
                "DISCONNECT"
            ]
        );
    }

    #[test]
    fn the_sdk_topics_pass_the_topic_checks() {
        for text in [
            "devices/dev1/messages/events/%24.mid=mid-1&a%20b=x%2Fy%26z&b=2",
            "$iothub/twin/GET/?$rid=1",
            "devices/dev1/messages/devicebound/%24.mid=m-1&iothub-ack=full&flag&empty=",
            "2030-01-01T00:00:00+00:00",
        ] {
            let case = TopicCase {
                text: text.to_owned(),
                client_id: "dev1/mod1".to_owned(),
                input_name: "in 1/é".to_owned(),
                method: "reboot now".to_owned(),
                rid: 0x1f,
                status: 204,
                version: 7,
                system: vec![
                    (SystemProperty::MessageId, "m/1".to_owned()),
                    (SystemProperty::ContentType, "application/json".to_owned()),
                ],
                application: vec![("a b".to_owned(), "x/y&z=é".to_owned())],
            };
            case.check();
        }
        iothub_topic(b"");
        iothub_topic(b"\xFF\xFFdev1\xFF\xFF\xFF\x01\x02\xFF\xFE\x03\xFFv\xFFk\xFFv");
    }

    fn any_text(max_chars: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..max_chars)
            .prop_map(|chars| chars.into_iter().collect())
    }

    fn any_case() -> impl Strategy<Value = TopicCase> {
        let id = "[A-Za-z0-9+%_#*?!(),=@$'.-]{1,128}";
        let client_id = (id, proptest::option::of(id)).prop_map(|(device, module)| match module {
            Some(module) => format!("{device}/{module}"),
            None => device,
        });
        let system = proptest::collection::vec(
            (
                proptest::sample::select(SystemProperty::ALL.to_vec()),
                any_text(24),
            ),
            0..SystemProperty::COUNT,
        );
        let application = proptest::collection::vec((any_text(16), any_text(40)), 0..24);
        (
            (any_text(40), client_id, any_text(32), any_text(32)),
            (any::<u64>(), any::<u16>(), any::<u64>()),
            system,
            application,
        )
            .prop_map(
                |(
                    (text, client_id, input_name, method),
                    (rid, status, version),
                    system,
                    application,
                )| {
                    TopicCase {
                        text,
                        client_id,
                        input_name,
                        method,
                        rid,
                        status,
                        version,
                        system,
                        application,
                    }
                },
            )
    }

    proptest! {
        /// Any byte stream: the decoder's invariants hold.
        #[test]
        fn mqtt_packet_holds_on_any_bytes(input in proptest::collection::vec(any::<u8>(), 1..600)) {
            mqtt_packet(&input);
        }

        /// Streams of plausible packets reach deeper than random bytes do.
        #[test]
        fn mqtt_packet_holds_on_plausible_packets(
            piece_bytes: u8,
            packets in proptest::collection::vec(
                (proptest::sample::select(&[0x10u8, 0x30, 0x32, 0x34, 0x40, 0x82, 0xA2, 0xC0, 0xE0][..]),
                 proptest::collection::vec(any::<u8>(), 0..40)),
                1..6,
            ),
        ) {
            let mut input = vec![piece_bytes];
            for (byte1, body) in &packets {
                put_fixed_header(&mut input, *byte1, body.len());
                input.extend_from_slice(body);
            }
            mqtt_packet(&input);
        }

        /// Any ids, names and properties, with any Unicode: every built topic parses back.
        #[test]
        fn iothub_topic_holds_on_any_values(case in any_case()) {
            case.check();
        }

        /// Any bytes, cut into a case the way the fuzz target cuts them.
        #[test]
        fn iothub_topic_holds_on_any_bytes(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            iothub_topic(&input);
        }
    }
}
