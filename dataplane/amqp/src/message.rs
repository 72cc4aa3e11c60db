//! Incoming messages: splitting the sections of a transfer payload and decoding the ones we
//! use, plus the plain [`C2dMessage`] the IoT Hub service SDK sends.
//!
//! ```text
//! payload = section*     section = 00 53 <code> <value>
//! ┌────────┬─────────────────────┬─────────────────────┬────────────┬────────────────────────┬──────────────────┬────────┐
//! │ header │ delivery-annotations│ message-annotations │ properties │ application-properties │ body             │ footer │
//! │ 0x70   │ 0x71                │ 0x72                │ 0x73       │ 0x74                   │ 0x75* | 76* | 77 │ 0x78   │
//! └────────┴─────────────────────┴─────────────────────┴────────────┴────────────────────────┴──────────────────┴────────┘
//! ```
//!
//! Sections are validated by [`crate::codec::value_len`] before anything is decoded.

use fe2o3_amqp_types::messaging::{ApplicationProperties, MessageId, Properties};
use fe2o3_amqp_types::primitives::SimpleValue;
use serde_amqp::Value;

use crate::codec::{self, code};
use crate::error::MessageError;

/// Section descriptor codes.
pub mod section {
    /// header.
    pub const HEADER: u8 = 0x70;
    /// delivery-annotations.
    pub const DELIVERY_ANNOTATIONS: u8 = 0x71;
    /// message-annotations.
    pub const MESSAGE_ANNOTATIONS: u8 = 0x72;
    /// properties.
    pub const PROPERTIES: u8 = 0x73;
    /// application-properties.
    pub const APPLICATION_PROPERTIES: u8 = 0x74;
    /// data (binary body).
    pub const DATA: u8 = 0x75;
    /// amqp-sequence body.
    pub const AMQP_SEQUENCE: u8 = 0x76;
    /// amqp-value body.
    pub const AMQP_VALUE: u8 = 0x77;
    /// footer.
    pub const FOOTER: u8 = 0x78;
}

/// The sections of one message, borrowed from its payload. Each field holds the whole
/// encoded section, descriptor included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sections<'a> {
    /// header.
    pub header: Option<&'a [u8]>,
    /// delivery-annotations.
    pub delivery_annotations: Option<&'a [u8]>,
    /// message-annotations.
    pub message_annotations: Option<&'a [u8]>,
    /// properties.
    pub properties: Option<&'a [u8]>,
    /// application-properties.
    pub application_properties: Option<&'a [u8]>,
    /// Body sections in order: data, amqp-sequence or one amqp-value.
    pub body: Vec<&'a [u8]>,
    /// footer.
    pub footer: Option<&'a [u8]>,
}

fn decode_err(detail: &'static str) -> MessageError {
    MessageError::Decode { detail }
}

impl<'a> Sections<'a> {
    /// Splits a transfer payload into sections. Order is not enforced (pyamqp accepts any),
    /// but every section must be a described value with a known section descriptor.
    pub fn split(mut payload: &'a [u8]) -> Result<Self, MessageError> {
        let mut sections = Self::default();
        while !payload.is_empty() {
            let len = codec::value_len(payload).map_err(|e| decode_err(e.detail()))?;
            let (section, rest) = payload.split_at(len);
            let Some((descriptor, _)) = codec::numeric_descriptor(section) else {
                return Err(decode_err("section without a numeric descriptor"));
            };
            let slot = match descriptor {
                0x70 => &mut sections.header,
                0x71 => &mut sections.delivery_annotations,
                0x72 => &mut sections.message_annotations,
                0x73 => &mut sections.properties,
                0x74 => &mut sections.application_properties,
                0x75..=0x77 => {
                    sections.body.push(section);
                    payload = rest;
                    continue;
                }
                0x78 => &mut sections.footer,
                _ => return Err(decode_err("unknown section descriptor")),
            };
            if slot.replace(section).is_some() {
                return Err(decode_err("section repeated"));
            }
            payload = rest;
        }
        Ok(sections)
    }

    /// The properties section, decoded.
    pub fn decode_properties(&self) -> Result<Option<Properties>, MessageError> {
        self.properties
            .map(|bytes| {
                serde_amqp::from_slice::<Properties>(bytes).map_err(|_| decode_err("properties"))
            })
            .transpose()
    }

    /// The application properties in wire order.
    pub fn decode_application_properties(
        &self,
    ) -> Result<Vec<(String, SimpleValue)>, MessageError> {
        let Some(bytes) = self.application_properties else {
            return Ok(Vec::new());
        };
        let properties = serde_amqp::from_slice::<ApplicationProperties>(bytes)
            .map_err(|_| decode_err("application-properties"))?;
        Ok(properties.0.into_iter().collect())
    }

    /// The raw encoding of properties field `index` (0 = message-id), if present and not null.
    pub fn properties_field(&self, index: usize) -> Option<&'a [u8]> {
        let bytes = self.properties?;
        let (_, offset) = codec::numeric_descriptor(bytes)?;
        let fields = codec::list_fields(&bytes[offset..]).ok()??;
        fields
            .get(index)
            .copied()
            .filter(|field| field.first() != Some(&code::NULL))
    }

    /// The body as one byte string: the data sections concatenated. `None` when the body is
    /// not made of data sections.
    pub fn data_body(&self) -> Result<Option<Vec<u8>>, MessageError> {
        let mut body = Vec::new();
        for section in &self.body {
            let Some((descriptor, offset)) = codec::numeric_descriptor(section) else {
                return Ok(None);
            };
            if descriptor != u64::from(section::DATA) {
                return Ok(None);
            }
            body.extend_from_slice(binary_content(&section[offset..])?);
        }
        Ok(Some(body))
    }

    /// The body when it is a single amqp-value section, decoded.
    pub fn value_body(&self) -> Result<Option<Value>, MessageError> {
        let [section] = self.body[..] else {
            return Ok(None);
        };
        match codec::numeric_descriptor(section) {
            Some((descriptor, offset)) if descriptor == u64::from(section::AMQP_VALUE) => {
                serde_amqp::from_slice::<Value>(&section[offset..])
                    .map(Some)
                    .map_err(|_| decode_err("amqp-value"))
            }
            _ => Ok(None),
        }
    }
}

/// The bytes inside an encoded binary (vbin8 or vbin32).
fn binary_content(encoded: &[u8]) -> Result<&[u8], MessageError> {
    match encoded.first() {
        Some(&code::VBIN8) => Ok(&encoded[2..]),
        Some(&code::VBIN32) => Ok(&encoded[5..]),
        _ => Err(decode_err("data section does not hold a binary")),
    }
}

/// A cloud-to-device message as the IoT Hub service SDK sends it to
/// `amqps://{host}/messages/devicebound`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct C2dMessage {
    /// `properties.message-id`, a string unless the caller chose another type.
    pub message_id: Option<MessageId>,
    /// `properties.to`: `/devices/{id}/messages/devicebound`.
    pub to: Option<String>,
    /// `properties.correlation-id`.
    pub correlation_id: Option<MessageId>,
    /// `properties.user-id`.
    pub user_id: Option<Vec<u8>>,
    /// `properties.content-type` (a symbol on the wire).
    pub content_type: Option<String>,
    /// `properties.content-encoding` (a symbol on the wire).
    pub content_encoding: Option<String>,
    /// `properties.absolute-expiry-time`, milliseconds since the Unix epoch.
    pub absolute_expiry_time_ms: Option<i64>,
    /// `properties.creation-time`, milliseconds since the Unix epoch.
    pub creation_time_ms: Option<i64>,
    /// Application properties in wire order, e.g. `iothub-ack`.
    pub application_properties: Vec<(String, SimpleValue)>,
    /// The data sections, concatenated.
    pub body: Vec<u8>,
}

impl C2dMessage {
    /// Decodes a transfer payload. A body that is not data sections is refused: the service
    /// SDK always sends one data section.
    pub fn decode(payload: &[u8]) -> Result<Self, MessageError> {
        let sections = Sections::split(payload)?;
        let properties = sections.decode_properties()?.unwrap_or_default();
        let body = sections
            .data_body()?
            .ok_or(MessageError::MissingField { field: "data body" })?;
        Ok(Self {
            message_id: properties.message_id,
            to: properties.to,
            correlation_id: properties.correlation_id,
            user_id: properties.user_id.map(|bytes| bytes.to_vec()),
            content_type: properties.content_type.map(|s| s.0),
            content_encoding: properties.content_encoding.map(|s| s.0),
            absolute_expiry_time_ms: properties.absolute_expiry_time.map(|t| t.milliseconds()),
            creation_time_ms: properties.creation_time.map(|t| t.milliseconds()),
            application_properties: sections.decode_application_properties()?,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Compound, put_descriptor, put_str, put_sym};

    /// A C2D message as the service SDK was observed to send it, encoded the way uamqp lays
    /// it out: properties with trailing fields, app properties, one data.
    fn observed_c2d() -> Vec<u8> {
        let mut buf = Vec::new();
        put_descriptor(&mut buf, section::PROPERTIES);
        let list = Compound::begin_list(&mut buf);
        put_str(&mut buf, "mid-9"); // message-id
        codec::put_null(&mut buf); // user-id
        put_str(&mut buf, "/devices/dev1/messages/devicebound"); // to
        codec::put_null(&mut buf); // subject
        codec::put_null(&mut buf); // reply-to
        put_str(&mut buf, "corr-9"); // correlation-id
        put_sym(&mut buf, "application/json");
        put_sym(&mut buf, "utf-8");
        codec::put_timestamp(&mut buf, 1_700_000_000_000);
        list.end(&mut buf, 9);
        put_descriptor(&mut buf, section::APPLICATION_PROPERTIES);
        let map = Compound::begin_map(&mut buf);
        put_str(&mut buf, "ack");
        put_str(&mut buf, "full");
        put_str(&mut buf, "custom");
        put_str(&mut buf, "v");
        map.end(&mut buf, 4);
        put_descriptor(&mut buf, section::DATA);
        codec::put_binary(&mut buf, b"hello");
        buf
    }

    #[test]
    fn c2d_message_from_the_service_sdk_decodes_into_plain_fields() {
        let message = C2dMessage::decode(&observed_c2d()).expect("decodes");
        assert_eq!(message.message_id, Some(MessageId::String("mid-9".into())));
        assert_eq!(
            message.to.as_deref(),
            Some("/devices/dev1/messages/devicebound")
        );
        assert_eq!(
            message.correlation_id,
            Some(MessageId::String("corr-9".into()))
        );
        assert_eq!(message.content_type.as_deref(), Some("application/json"));
        assert_eq!(message.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(message.absolute_expiry_time_ms, Some(1_700_000_000_000));
        assert_eq!(
            message.application_properties,
            vec![
                ("ack".to_string(), SimpleValue::String("full".into())),
                ("custom".to_string(), SimpleValue::String("v".into())),
            ]
        );
        assert_eq!(message.body, b"hello");
    }

    #[test]
    fn properties_field_returns_the_raw_message_id() {
        let payload = observed_c2d();
        let sections = Sections::split(&payload).expect("splits");
        assert_eq!(
            sections.properties_field(0),
            Some(&[0xa1, 5, b'm', b'i', b'd', b'-', b'9'][..])
        );
        assert_eq!(sections.properties_field(1), None);
        assert_eq!(sections.properties_field(42), None);
    }

    #[test]
    fn garbage_sections_are_decode_errors() {
        assert!(Sections::split(&[0x00, 0x53, 0x79, 0x40]).is_err());
        assert!(Sections::split(&[0xa1, 0x01, b'x']).is_err());
        assert!(Sections::split(&[0x00, 0x53, 0x75, 0xa0, 0x09, 1]).is_err());
        let mut repeated = observed_c2d();
        repeated.extend_from_slice(&observed_c2d()[..]);
        assert!(Sections::split(&repeated).is_err());
    }
}
