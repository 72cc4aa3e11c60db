//! CONNECT, the first packet of every connection.
//!
//! ```text
//! ┌──────┬─────────────┬──────────────────┬───────┬───────┬────────────┬────────────────────┐
//! │ 0x10 │ remaining   │ 0x0004 "MQTT"    │ level │ flags │ keep-alive │ payload            │
//! │      │ length 1..4 │ protocol name    │ 4     │ (u8)  │ (u16, s)   │                    │
//! └──────┴─────────────┴──────────────────┴───────┴───────┴────────────┴────────────────────┘
//!   flags:  7 user name │ 6 password │ 5 will retain │ 4-3 will QoS │ 2 will │ 1 clean │ 0 (0)
//!   payload, each a u16 length then bytes, present as the flags say:
//!           client id, will topic, will message, user name, password
//! ```
//!
//! The protocol name, level and flags are checked here before mqttbytes decodes the rest:
//! mqttbytes 0.6 accepts level 5 as if it were 3.1.1, and ignores the reserved flag and a
//! password sent without a user name.

use bytes::Bytes;

use super::{from_mqttbytes, from_mqttbytes_qos, read_u16, to_mqttbytes};
use crate::mqtt::codec::FixedHeader;
use crate::mqtt::{Error, PacketType, QoS};

/// A connection request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// `{deviceId}` or `{deviceId}/{moduleId}` for IoT Hub; may be empty in MQTT.
    pub client_id: String,
    /// For IoT Hub `{host}/{clientId}/?api-version=...`; `None` when absent or empty.
    pub username: Option<String>,
    /// A SAS token, or `None` with X.509 client certificates (or when empty).
    pub password: Option<String>,
    /// Seconds; 0 turns the keep-alive off. The device SDK sends 60 by default.
    pub keep_alive_secs: u16,
    /// The device SDK always connects with `false`, and relies on the server keeping its
    /// subscriptions.
    pub clean_session: bool,
    /// The message to publish if the connection drops without DISCONNECT.
    pub will: Option<Will>,
}

/// A will message. IoT Hub sends it as a D2C message with `iothub-MessageType=Will`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// The topic, a D2C telemetry topic for IoT Hub.
    pub topic: String,
    /// The message body.
    pub message: Bytes,
    /// The requested QoS.
    pub qos: QoS,
    /// The retain flag.
    pub retain: bool,
}

const FLAG_USERNAME: u8 = 0x80;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_RESERVED: u8 = 0x01;

pub(crate) fn decode(header: &FixedHeader, frame: Bytes) -> Result<Connect, Error> {
    check_protocol(&frame[header.header_bytes..])?;
    let packet = mqttbytes::v4::Connect::read(to_mqttbytes(header), frame)
        .map_err(|error| from_mqttbytes(PacketType::Connect, error))?;
    let (username, password) = match packet.login {
        Some(login) => (non_empty(login.username), non_empty(login.password)),
        None => (None, None),
    };
    Ok(Connect {
        client_id: packet.client_id,
        username,
        password,
        keep_alive_secs: packet.keep_alive,
        clean_session: packet.clean_session,
        will: packet.last_will.map(|will| Will {
            topic: will.topic,
            message: will.message,
            qos: from_mqttbytes_qos(will.qos),
            retain: will.retain,
        }),
    })
}

/// Checks the protocol name, level and connect flags at the start of a CONNECT body.
fn check_protocol(body: &[u8]) -> Result<(), Error> {
    let malformed = |detail| Error::Malformed {
        packet_type: PacketType::Connect,
        detail,
    };
    let name_bytes = usize::from(read_u16(body, 0, PacketType::Connect)?);
    let name = body.get(2..2 + name_bytes).ok_or(malformed(
        "the protocol name runs past the end of the packet",
    ))?;
    let &level = body
        .get(2 + name_bytes)
        .ok_or(malformed("no protocol level"))?;
    match name {
        b"MQTT" if level == 4 => {}
        // MQTT 3.1 calls itself "MQIsdp" at level 3; a client speaking it understands CONNACK 1.
        b"MQTT" | b"MQIsdp" => return Err(Error::UnsupportedProtocolLevel { level }),
        _ => return Err(Error::UnknownProtocolName),
    }
    let &flags = body
        .get(3 + name_bytes)
        .ok_or(malformed("no connect flags"))?;
    if flags & FLAG_RESERVED != 0 {
        return Err(malformed("the reserved connect flag is set"));
    }
    if flags & FLAG_PASSWORD != 0 && flags & FLAG_USERNAME == 0 {
        return Err(malformed("a password without a user name"));
    }
    Ok(())
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{ConnectReturnCode, Decoded, Decoder, Packet, Reaction};
    use bytes::BytesMut;

    /// The user name the device SDK was observed to send.
    const SDK_USERNAME: &str = "localhost/dev1/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0%283.11.7%3BLinux%20%231%20SMP%20PREEMPT_DYNAMIC%20%400%3Bx86_64%29";
    /// The device password of a worked SAS example: device `dev1`, zero key.
    const SDK_PASSWORD: &str = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=FZOlNa5AJB6q3ivl3f%2FLUonFxr5QRUBtgfHSRBWHMbo%3D&se=1700000000";

    fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
        Decoder::default().decode(&mut BytesMut::from(bytes))
    }

    fn put_string(out: &mut Vec<u8>, value: &str) {
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }

    /// The CONNECT the device SDK sends: "MQTT" level 4, flags 0xC0 (user name and
    /// password, clean session 0, no will), keep-alive 60, client id `dev1`.
    fn sdk_connect() -> Vec<u8> {
        let mut bytes = vec![
            0x10, 0xA8, 0x02, // CONNECT, remaining length 296
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xC0, 0x00, 0x3C,
        ];
        put_string(&mut bytes, "dev1");
        put_string(&mut bytes, SDK_USERNAME);
        put_string(&mut bytes, SDK_PASSWORD);
        assert_eq!(bytes.len(), 3 + 296);
        bytes
    }

    #[test]
    fn the_sdk_connect_decodes_field_by_field() {
        assert_eq!(
            decode(&sdk_connect()),
            Ok(Decoded::Packet(Packet::Connect(Box::new(Connect {
                client_id: "dev1".to_owned(),
                username: Some(SDK_USERNAME.to_owned()),
                password: Some(SDK_PASSWORD.to_owned()),
                keep_alive_secs: 60,
                clean_session: false,
                will: None,
            }))))
        );
    }

    #[test]
    fn protocol_levels_other_than_4_get_connack_1() {
        for (name, level) in [("MQTT", 5u8), ("MQTT", 3), ("MQIsdp", 3)] {
            let mut body = Vec::new();
            put_string(&mut body, name);
            body.extend_from_slice(&[level, 0x02, 0x00, 0x3C]);
            put_string(&mut body, "dev1");
            let mut bytes = vec![0x10, body.len() as u8];
            bytes.extend_from_slice(&body);
            let error = decode(&bytes).unwrap_err();
            assert_eq!(error, Error::UnsupportedProtocolLevel { level });
            assert_eq!(
                error.reaction(),
                Reaction::ConnAck(ConnectReturnCode::UnacceptableProtocolVersion)
            );
        }
    }

    #[test]
    fn an_unknown_protocol_name_is_a_disconnect() {
        let mut bytes = vec![0x10, 0x0C, 0x00, 0x04];
        bytes.extend_from_slice(b"HTTP\x04\x02\x00\x3C\x00\x00");
        assert_eq!(decode(&bytes), Err(Error::UnknownProtocolName));
    }

    #[test]
    fn reserved_flag_and_password_without_user_name_are_malformed() {
        for flags in [0x03u8, 0x42] {
            let mut bytes = vec![0x10, 0x0C, 0x00, 0x04];
            bytes.extend_from_slice(b"MQTT\x04");
            bytes.extend_from_slice(&[flags, 0x00, 0x3C, 0x00, 0x00]);
            assert!(
                matches!(decode(&bytes), Err(Error::Malformed { .. })),
                "{flags:#x}"
            );
        }
    }

    #[test]
    fn a_will_decodes() {
        let mut body = Vec::new();
        put_string(&mut body, "MQTT");
        body.extend_from_slice(&[0x04, 0x2E, 0x00, 0x0A]); // will, QoS 1, retain, clean
        put_string(&mut body, "dev1");
        put_string(&mut body, "devices/dev1/messages/events/");
        put_string(&mut body, "bye");
        let mut bytes = vec![0x10, body.len() as u8];
        bytes.extend_from_slice(&body);
        let Ok(Decoded::Packet(Packet::Connect(connect))) = decode(&bytes) else {
            panic!("should decode");
        };
        assert_eq!(
            connect.will,
            Some(Will {
                topic: "devices/dev1/messages/events/".to_owned(),
                message: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
            })
        );
        assert!(connect.clean_session);
        assert_eq!(connect.username, None);
    }

    #[test]
    fn every_truncation_of_the_sdk_connect_is_malformed_not_a_panic() {
        // Shorten the body while keeping the header honest about it.
        let full = sdk_connect();
        let body = &full[3..];
        for len in 0..body.len() {
            let mut bytes = Vec::new();
            crate::mqtt::codec::put_fixed_header(&mut bytes, 0x10, len);
            bytes.extend_from_slice(&body[..len]);
            assert!(decode(&bytes).is_err(), "{len} bytes of body decoded");
        }
    }
}
