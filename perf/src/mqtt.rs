//! The few MQTT 3.1.1 packets a load generator and a do-nothing broker need, written and
//! parsed by hand so that the hot path neither allocates nor copies.
//!
//! ```text
//! fixed header                         variable header + payload
//! ┌──────────┬──────────┬────────────────────────┬───────────────────────────────────────┐
//! │ type<<4  │ flags    │ remaining length       │ PUBLISH: topic (u16 len + bytes),     │
//! │ (4 bits) │ (4 bits) │ 1-4 bytes, 7 bits each │   packet id (u16, QoS > 0), payload    │
//! └──────────┴──────────┴────────────────────────┴───────────────────────────────────────┘
//! CONNACK 20 02 <session present> <return code>      PUBACK 40 02 <packet id u16>
//! PINGREQ c0 00   PINGRESP d0 00   DISCONNECT e0 00
//! ```

/// CONNECT.
pub const CONNECT: u8 = 1;
/// CONNACK.
pub const CONNACK: u8 = 2;
/// PUBLISH.
pub const PUBLISH: u8 = 3;
/// PUBACK.
pub const PUBACK: u8 = 4;
/// SUBSCRIBE.
pub const SUBSCRIBE: u8 = 8;
/// SUBACK.
pub const SUBACK: u8 = 9;
/// PINGREQ.
pub const PINGREQ: u8 = 12;
/// PINGRESP.
pub const PINGRESP: u8 = 13;
/// DISCONNECT.
pub const DISCONNECT: u8 = 14;

/// The largest remaining length MQTT can express (4 length bytes).
pub const REMAINING_LENGTH_MAX: usize = 268_435_455;

/// PINGREQ, whole.
pub const PINGREQ_PACKET: [u8; 2] = [PINGREQ << 4, 0];
/// PINGRESP, whole.
pub const PINGRESP_PACKET: [u8; 2] = [PINGRESP << 4, 0];
/// DISCONNECT, whole.
pub const DISCONNECT_PACKET: [u8; 2] = [DISCONNECT << 4, 0];

/// Why bytes are not a packet we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The remaining length uses more than 4 bytes.
    BadLength,
    /// The packet is larger than the caller allows.
    TooLarge,
    /// The packet's fields are inconsistent with its length or type.
    Malformed(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadLength => write!(f, "remaining length longer than 4 bytes"),
            Self::TooLarge => write!(f, "packet too large"),
            Self::Malformed(what) => write!(f, "malformed packet: {what}"),
        }
    }
}

/// One packet borrowed from an input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The packet type (1..=14).
    pub kind: u8,
    /// The low four bits of the first byte.
    pub flags: u8,
    /// Variable header and payload.
    pub body: &'a [u8],
}

/// Splits the first complete packet off `bytes`: `Ok(None)` means more bytes are needed.
/// Returns the packet and the number of bytes it used.
#[inline]
pub fn split_packet(
    bytes: &[u8],
    size_max: usize,
) -> Result<Option<(Packet<'_>, usize)>, ParseError> {
    let Some(&first) = bytes.first() else {
        return Ok(None);
    };
    let mut length = 0_usize;
    let mut shift = 0;
    let mut at = 1;
    loop {
        let Some(&byte) = bytes.get(at) else {
            return Ok(None);
        };
        length |= usize::from(byte & 0x7f) << shift;
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(ParseError::BadLength);
        }
    }
    if length > size_max {
        return Err(ParseError::TooLarge);
    }
    let end = at + length;
    if bytes.len() < end {
        return Ok(None);
    }
    Ok(Some((
        Packet {
            kind: first >> 4,
            flags: first & 0x0f,
            body: &bytes[at..end],
        },
        end,
    )))
}

/// Appends a remaining-length field.
#[inline]
pub fn put_remaining_length(buf: &mut Vec<u8>, mut length: usize) {
    assert!(length <= REMAINING_LENGTH_MAX, "MQTT packets are < 256 MiB");
    loop {
        let mut byte = (length & 0x7f) as u8;
        length >>= 7;
        if length > 0 {
            byte |= 0x80;
        }
        buf.push(byte);
        if length == 0 {
            break;
        }
    }
}

fn put_str(buf: &mut Vec<u8>, text: &[u8]) {
    let len = u16::try_from(text.len()).expect("MQTT strings are < 64 KiB");
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(text);
}

/// The fields of a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// Client identifier.
    pub client_id: &'a str,
    /// User name, if any.
    pub username: Option<&'a str>,
    /// Password, if any (only with a user name, as 3.1.1 requires).
    pub password: Option<&'a str>,
    /// Keep-alive in seconds (0 = off).
    pub keep_alive_s: u16,
    /// Clean session flag.
    pub clean_session: bool,
}

/// Appends a CONNECT (protocol "MQTT" level 4, no will).
pub fn put_connect(buf: &mut Vec<u8>, connect: &Connect<'_>) {
    assert!(
        connect.password.is_none() || connect.username.is_some(),
        "3.1.1 forbids a password without a user name"
    );
    let mut flags = 0_u8;
    if connect.clean_session {
        flags |= 0x02;
    }
    let mut length = 10 + 2 + connect.client_id.len();
    if let Some(username) = connect.username {
        flags |= 0x80;
        length += 2 + username.len();
    }
    if let Some(password) = connect.password {
        flags |= 0x40;
        length += 2 + password.len();
    }
    buf.push(CONNECT << 4);
    put_remaining_length(buf, length);
    let start = buf.len();
    put_str(buf, b"MQTT");
    buf.push(4);
    buf.push(flags);
    buf.extend_from_slice(&connect.keep_alive_s.to_be_bytes());
    put_str(buf, connect.client_id.as_bytes());
    if let Some(username) = connect.username {
        put_str(buf, username.as_bytes());
    }
    if let Some(password) = connect.password {
        put_str(buf, password.as_bytes());
    }
    assert_eq!(
        buf.len() - start,
        length,
        "CONNECT length is computed exactly"
    );
}

/// Appends a PUBLISH header (fixed header, topic, packet id) for a payload of
/// `payload_len` bytes; the caller appends the payload right after. QoS 0 carries no id.
#[inline]
pub fn put_publish_header(
    buf: &mut Vec<u8>,
    qos: u8,
    topic: &[u8],
    packet_id: u16,
    payload_len: usize,
) {
    debug_assert!(qos <= 1, "the generator publishes at QoS 0 or 1");
    let id_len = if qos > 0 { 2 } else { 0 };
    buf.push((PUBLISH << 4) | (qos << 1));
    put_remaining_length(buf, 2 + topic.len() + id_len + payload_len);
    put_str(buf, topic);
    if qos > 0 {
        debug_assert!(packet_id != 0, "packet id 0 is not allowed");
        buf.extend_from_slice(&packet_id.to_be_bytes());
    }
}

/// Appends a PUBACK.
#[inline]
pub fn put_puback(buf: &mut Vec<u8>, packet_id: u16) {
    let [hi, lo] = packet_id.to_be_bytes();
    buf.extend_from_slice(&[PUBACK << 4, 2, hi, lo]);
}

/// Appends a CONNACK.
pub fn put_connack(buf: &mut Vec<u8>, session_present: bool, return_code: u8) {
    buf.extend_from_slice(&[CONNACK << 4, 2, u8::from(session_present), return_code]);
}

/// The packet id of a PUBACK body.
#[inline]
pub fn puback_id(body: &[u8]) -> Result<u16, ParseError> {
    match body {
        [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo])),
        _ => Err(ParseError::Malformed("PUBACK is not 2 bytes")),
    }
}

/// The return code of a CONNACK body.
pub fn connack_code(body: &[u8]) -> Result<u8, ParseError> {
    match body {
        [_, code] => Ok(*code),
        _ => Err(ParseError::Malformed("CONNACK is not 2 bytes")),
    }
}

/// The fields of a PUBLISH a broker needs to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishInfo<'a> {
    /// 0, 1 or 2.
    pub qos: u8,
    /// The topic.
    pub topic: &'a [u8],
    /// The packet id (0 for QoS 0).
    pub packet_id: u16,
    /// The application payload.
    pub payload: &'a [u8],
}

/// Reads the topic, packet id and payload of a PUBLISH.
#[inline]
pub fn parse_publish<'a>(packet: &Packet<'a>) -> Result<PublishInfo<'a>, ParseError> {
    let qos = (packet.flags >> 1) & 0x03;
    if qos == 3 {
        return Err(ParseError::Malformed("PUBLISH with QoS 3"));
    }
    let body = packet.body;
    let [hi, lo, rest @ ..] = body else {
        return Err(ParseError::Malformed("PUBLISH without a topic"));
    };
    let topic_len = usize::from(u16::from_be_bytes([*hi, *lo]));
    let id_len = if qos > 0 { 2 } else { 0 };
    if rest.len() < topic_len + id_len {
        return Err(ParseError::Malformed("PUBLISH shorter than its topic"));
    }
    let (topic, rest) = rest.split_at(topic_len);
    let (packet_id, payload) = if qos > 0 {
        let id = u16::from_be_bytes([rest[0], rest[1]]);
        if id == 0 {
            return Err(ParseError::Malformed("PUBLISH with packet id 0"));
        }
        (id, &rest[2..])
    } else {
        (0, rest)
    };
    Ok(PublishInfo {
        qos,
        topic,
        packet_id,
        payload,
    })
}

/// Checks that a CONNECT body names MQTT 3.1.1 (or 3.1, which brokers still see).
pub fn check_connect(body: &[u8]) -> Result<(), ParseError> {
    match body {
        [0, 4, b'M', b'Q', b'T', b'T', 4, ..]
        | [0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, ..] => Ok(()),
        _ => Err(ParseError::Malformed("CONNECT is not MQTT 3.1.1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use mqttbytes::v4;

    fn decode(bytes: &[u8]) -> v4::Packet {
        let mut buf = BytesMut::from(bytes);
        v4::read(&mut buf, 1 << 20).expect("mqttbytes decodes what we write")
    }

    #[test]
    fn connect_matches_an_independent_decoder() {
        let mut buf = Vec::new();
        put_connect(
            &mut buf,
            &Connect {
                client_id: "dev1",
                username: Some("localhost/dev1/?api-version=2019-10-01"),
                password: Some("SharedAccessSignature sr=x&sig=y&se=1"),
                keep_alive_s: 60,
                clean_session: false,
            },
        );
        let v4::Packet::Connect(connect) = decode(&buf) else {
            panic!("not a CONNECT");
        };
        assert_eq!(connect.client_id, "dev1");
        assert_eq!(connect.keep_alive, 60);
        assert!(!connect.clean_session);
        let login = connect.login.expect("credentials");
        assert_eq!(login.username, "localhost/dev1/?api-version=2019-10-01");
        assert_eq!(login.password, "SharedAccessSignature sr=x&sig=y&se=1");
        let (packet, used) = split_packet(&buf, 1024).expect("valid").expect("whole");
        assert_eq!((packet.kind, used), (CONNECT, buf.len()));
        assert_eq!(check_connect(packet.body), Ok(()));
    }

    #[test]
    fn publish_header_matches_an_independent_decoder_for_both_qos() {
        for (qos, id) in [(1_u8, 77_u16), (0, 0)] {
            let payload = vec![0xab; 300];
            let mut buf = Vec::new();
            put_publish_header(
                &mut buf,
                qos,
                b"devices/d/messages/events/",
                id,
                payload.len(),
            );
            buf.extend_from_slice(&payload);
            let v4::Packet::Publish(publish) = decode(&buf) else {
                panic!("not a PUBLISH");
            };
            assert_eq!(publish.topic, "devices/d/messages/events/");
            assert_eq!(publish.pkid, id);
            assert_eq!(publish.qos as u8, qos);
            assert_eq!(&publish.payload[..], &payload[..]);
            let (packet, _) = split_packet(&buf, 1024).expect("valid").expect("whole");
            let info = parse_publish(&packet).expect("parses");
            assert_eq!((info.qos, info.packet_id), (qos, id));
            assert_eq!(info.topic, b"devices/d/messages/events/");
            assert_eq!(info.payload, &payload[..]);
        }
    }

    #[test]
    fn remaining_length_boundaries() {
        for length in [
            0,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            REMAINING_LENGTH_MAX,
        ] {
            let mut buf = vec![0x30];
            put_remaining_length(&mut buf, length);
            let expected_bytes = match length {
                0..=127 => 1,
                128..=16_383 => 2,
                16_384..=2_097_151 => 3,
                _ => 4,
            };
            assert_eq!(buf.len() - 1, expected_bytes, "length {length}");
            // Only the header is present: the splitter must ask for more, not fail.
            if length > 0 {
                assert_eq!(split_packet(&buf, usize::MAX), Ok(None));
            }
        }
        assert_eq!(
            split_packet(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX),
            Err(ParseError::BadLength)
        );
        assert_eq!(split_packet(&[0x30, 0x10], 8), Err(ParseError::TooLarge));
    }

    #[test]
    fn acks_and_partial_input() {
        let mut buf = Vec::new();
        put_connack(&mut buf, false, 0);
        put_puback(&mut buf, 0x1234);
        buf.extend_from_slice(&PINGRESP_PACKET);
        let (p, used) = split_packet(&buf, 16).expect("valid").expect("whole");
        assert_eq!((p.kind, connack_code(p.body)), (CONNACK, Ok(0)));
        let (p, used2) = split_packet(&buf[used..], 16)
            .expect("valid")
            .expect("whole");
        assert_eq!((p.kind, puback_id(p.body)), (PUBACK, Ok(0x1234)));
        let rest = &buf[used + used2..];
        assert_eq!(split_packet(&rest[..1], 16), Ok(None));
        let (p, _) = split_packet(rest, 16).expect("valid").expect("whole");
        assert_eq!(p.kind, PINGRESP);
        assert!(puback_id(&[1]).is_err());
    }

    #[test]
    fn malformed_publishes_are_rejected() {
        let packet = |flags, body| Packet {
            kind: PUBLISH,
            flags,
            body,
        };
        assert!(
            parse_publish(&packet(0x06, &[0, 1, b'a', 0, 1])).is_err(),
            "QoS 3"
        );
        assert!(
            parse_publish(&packet(0x02, &[0, 5, b'a'])).is_err(),
            "short topic"
        );
        assert!(
            parse_publish(&packet(0x02, &[0, 1, b'a', 0, 0])).is_err(),
            "id 0"
        );
        assert!(
            parse_publish(&packet(0x00, &[0])).is_err(),
            "no topic length"
        );
    }
}
