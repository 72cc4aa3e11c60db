//! Event Hubs event messages, encoded by hand.
//!
//! ```text
//! ┌──────────────────────────────┬──────────────────────────────┬──────────────┬───────────────────────┬──────────────┐
//! │ delivery-annotations 00 53 71│ message-annotations 00 53 72 │ properties   │ application-properties│ data 00 53 75│
//! │ (runtime metric, optional)   │ x-opt-*, iothub-*            │ 00 53 73     │ 00 53 74              │ one binary   │
//! └──────────────────────────────┴──────────────────────────────┴──────────────┴───────────────────────┴──────────────┘
//! ```
//!
//! The annotation types are what the Python client needs to surface the values: the offset
//! is a **string** (a long gives `offset=None`), times are timestamps, the sequence number a
//! long. Content type and encoding are symbols. Everything about an event except the
//! delivery annotations is fixed when it is enqueued, so the data plane may encode once and
//! reuse the bytes; [`encode_runtime_metrics`] writes the part that changes per delivery.

use crate::codec::{self, Compound};
use crate::message::section;

/// The message-id or correlation-id of an event, in the AMQP type it had when it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageIdRef<'a> {
    /// A string id (what devices usually send).
    String(&'a str),
    /// A ulong id.
    Ulong(u64),
    /// A uuid id.
    Uuid(&'a [u8; 16]),
    /// A binary id.
    Binary(&'a [u8]),
}

impl MessageIdRef<'_> {
    fn put(&self, buf: &mut Vec<u8>) {
        match self {
            Self::String(s) => codec::put_str(buf, s),
            Self::Ulong(n) => codec::put_ulong(buf, *n),
            Self::Uuid(u) => codec::put_uuid(buf, u),
            Self::Binary(b) => codec::put_binary(buf, b),
        }
    }
}

/// The IoT Hub system annotations of an event from a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IotHubAnnotations<'a> {
    /// `iothub-connection-device-id`.
    pub device_id: Option<&'a str>,
    /// `iothub-connection-module-id`, only for module senders.
    pub module_id: Option<&'a str>,
    /// `iothub-connection-auth-method`: JSON text.
    pub auth_method: Option<&'a str>,
    /// `iothub-connection-auth-generation-id`: digits.
    pub auth_generation_id: Option<&'a str>,
    /// `iothub-enqueuedtime`, milliseconds since the Unix epoch.
    pub enqueued_time_ms: Option<i64>,
    /// `iothub-message-source`: `Telemetry`, `twinChangeEvents`, ….
    pub message_source: Option<&'a str>,
}

/// The standard properties of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventProperties<'a> {
    /// `message-id`.
    pub message_id: Option<MessageIdRef<'a>>,
    /// `user-id` (binary).
    pub user_id: Option<&'a [u8]>,
    /// `correlation-id`.
    pub correlation_id: Option<MessageIdRef<'a>>,
    /// `content-type`, written as a symbol.
    pub content_type: Option<&'a str>,
    /// `content-encoding`, written as a symbol.
    pub content_encoding: Option<&'a str>,
    /// `absolute-expiry-time`, milliseconds since the Unix epoch.
    pub absolute_expiry_time_ms: Option<i64>,
    /// `creation-time`, milliseconds since the Unix epoch.
    pub creation_time_ms: Option<i64>,
}

/// The last-enqueued figures of a partition, sent as delivery annotations when the
/// receiver desired `com.microsoft:enable-receiver-runtime-metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeMetrics<'a> {
    /// `last_enqueued_sequence_number`.
    pub last_enqueued_sequence_number: i64,
    /// `last_enqueued_offset` (a string).
    pub last_enqueued_offset: &'a str,
    /// `last_enqueued_time_utc`, milliseconds since the Unix epoch.
    pub last_enqueued_time_ms: i64,
    /// `runtime_info_retrieval_time_utc`, milliseconds since the Unix epoch.
    pub retrieval_time_ms: i64,
}

/// Everything that goes into one event message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFields<'a> {
    /// `x-opt-sequence-number`.
    pub sequence_number: i64,
    /// `x-opt-offset`, written as a string.
    pub offset: &'a str,
    /// `x-opt-enqueued-time`, milliseconds since the Unix epoch.
    pub enqueued_time_ms: i64,
    /// `x-opt-partition-key`; IoT Hub usually sends none.
    pub partition_key: Option<&'a str>,
    /// The `iothub-*` annotations.
    pub iothub: IotHubAnnotations<'a>,
    /// More string-valued message annotations, e.g. `dt-subject`, in order.
    pub extra_annotations: &'a [(&'a str, &'a str)],
    /// The properties section.
    pub properties: EventProperties<'a>,
    /// Application properties: string keys and values, in order.
    pub application_properties: &'a [(&'a str, &'a str)],
    /// The payload, sent as one data section.
    pub body: &'a [u8],
    /// Delivery annotations for receivers that track the last enqueued event.
    pub runtime_metrics: Option<RuntimeMetrics<'a>>,
}

/// Appends the encoded event message to `out`.
pub fn encode_event(event: &EventFields<'_>, out: &mut Vec<u8>) {
    if let Some(metrics) = &event.runtime_metrics {
        encode_runtime_metrics(metrics, out);
    }
    encode_message_annotations(event, out);
    encode_properties(&event.properties, out);
    if !event.application_properties.is_empty() {
        codec::put_descriptor(out, section::APPLICATION_PROPERTIES);
        let map = Compound::begin_map(out);
        for (key, value) in event.application_properties {
            codec::put_str(out, key);
            codec::put_str(out, value);
        }
        map.end(out, event.application_properties.len() * 2);
    }
    codec::put_descriptor(out, section::DATA);
    codec::put_binary(out, event.body);
}

/// Appends the delivery-annotations section carrying runtime metrics. A message encoded
/// without metrics can be prefixed with this section as-is: section order is free, and the
/// pyamqp decoder accepts any.
pub fn encode_runtime_metrics(metrics: &RuntimeMetrics<'_>, out: &mut Vec<u8>) {
    codec::put_descriptor(out, section::DELIVERY_ANNOTATIONS);
    let map = Compound::begin_map(out);
    codec::put_sym(out, "last_enqueued_sequence_number");
    codec::put_long(out, metrics.last_enqueued_sequence_number);
    codec::put_sym(out, "last_enqueued_offset");
    codec::put_str(out, metrics.last_enqueued_offset);
    codec::put_sym(out, "last_enqueued_time_utc");
    codec::put_timestamp(out, metrics.last_enqueued_time_ms);
    codec::put_sym(out, "runtime_info_retrieval_time_utc");
    codec::put_timestamp(out, metrics.retrieval_time_ms);
    map.end(out, 8);
}

fn encode_message_annotations(event: &EventFields<'_>, out: &mut Vec<u8>) {
    codec::put_descriptor(out, section::MESSAGE_ANNOTATIONS);
    let map = Compound::begin_map(out);
    let mut entries = 3;
    codec::put_sym(out, "x-opt-sequence-number");
    codec::put_long(out, event.sequence_number);
    codec::put_sym(out, "x-opt-offset");
    codec::put_str(out, event.offset);
    codec::put_sym(out, "x-opt-enqueued-time");
    codec::put_timestamp(out, event.enqueued_time_ms);
    let iothub = &event.iothub;
    entries += put_string_entry(out, "x-opt-partition-key", event.partition_key);
    entries += put_string_entry(out, "iothub-connection-device-id", iothub.device_id);
    entries += put_string_entry(out, "iothub-connection-module-id", iothub.module_id);
    entries += put_string_entry(out, "iothub-connection-auth-method", iothub.auth_method);
    entries += put_string_entry(
        out,
        "iothub-connection-auth-generation-id",
        iothub.auth_generation_id,
    );
    if let Some(time) = iothub.enqueued_time_ms {
        codec::put_sym(out, "iothub-enqueuedtime");
        codec::put_timestamp(out, time);
        entries += 1;
    }
    entries += put_string_entry(out, "iothub-message-source", iothub.message_source);
    for (key, value) in event.extra_annotations {
        entries += put_string_entry(out, key, Some(value));
    }
    map.end(out, entries * 2);
}

/// Writes `key => value` when there is a value; returns the number of entries written.
fn put_string_entry(out: &mut Vec<u8>, key: &str, value: Option<&str>) -> usize {
    match value {
        Some(value) => {
            codec::put_sym(out, key);
            codec::put_str(out, value);
            1
        }
        None => 0,
    }
}

fn encode_properties(properties: &EventProperties<'_>, out: &mut Vec<u8>) {
    // Fields after the last present one are left out (a trimmed list is valid AMQP and the
    // client accepts it); the fields before it are written as null.
    let present = [
        properties.message_id.is_some(),
        properties.user_id.is_some(),
        false, // to
        false, // subject
        false, // reply-to
        properties.correlation_id.is_some(),
        properties.content_type.is_some(),
        properties.content_encoding.is_some(),
        properties.absolute_expiry_time_ms.is_some(),
        properties.creation_time_ms.is_some(),
    ];
    let Some(last) = present.iter().rposition(|&p| p) else {
        return;
    };
    codec::put_descriptor(out, section::PROPERTIES);
    let list = Compound::begin_list(out);
    let fields = last + 1;
    for index in 0..fields {
        match index {
            0 => put_id(out, properties.message_id.as_ref()),
            1 => match properties.user_id {
                Some(id) => codec::put_binary(out, id),
                None => codec::put_null(out),
            },
            5 => put_id(out, properties.correlation_id.as_ref()),
            6 => put_opt_sym(out, properties.content_type),
            7 => put_opt_sym(out, properties.content_encoding),
            8 => put_opt_timestamp(out, properties.absolute_expiry_time_ms),
            9 => put_opt_timestamp(out, properties.creation_time_ms),
            _ => codec::put_null(out),
        }
    }
    list.end(out, fields);
}

fn put_id(out: &mut Vec<u8>, id: Option<&MessageIdRef<'_>>) {
    match id {
        Some(id) => id.put(out),
        None => codec::put_null(out),
    }
}

fn put_opt_sym(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => codec::put_sym(out, value),
        None => codec::put_null(out),
    }
}

fn put_opt_timestamp(out: &mut Vec<u8>, value: Option<i64>) {
    match value {
        Some(value) => codec::put_timestamp(out, value),
        None => codec::put_null(out),
    }
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp_types::messaging::{
        DeliveryAnnotations, MessageAnnotations, MessageId, Properties,
    };
    use serde_amqp::Value;
    use serde_amqp::primitives::Timestamp;

    use super::*;
    use crate::message::Sections;

    pub(crate) fn typical_event<'a>(
        body: &'a [u8],
        metrics: Option<RuntimeMetrics<'a>>,
    ) -> EventFields<'a> {
        EventFields {
            sequence_number: 42,
            offset: "8192",
            enqueued_time_ms: 1_700_000_000_123,
            partition_key: None,
            iothub: IotHubAnnotations {
                device_id: Some("dev1"),
                module_id: None,
                auth_method: Some(
                    r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#,
                ),
                auth_generation_id: Some("638000000000000000"),
                enqueued_time_ms: Some(1_700_000_000_100),
                message_source: Some("Telemetry"),
            },
            extra_annotations: &[],
            properties: EventProperties {
                message_id: Some(MessageIdRef::String("msg-1")),
                content_type: Some("application/json"),
                content_encoding: Some("utf-8"),
                ..EventProperties::default()
            },
            application_properties: &[("temperature", "high"), ("a", "b")],
            body,
            runtime_metrics: metrics,
        }
    }

    fn annotation<'a>(annotations: &'a MessageAnnotations, key: &str) -> Option<&'a Value> {
        annotations
            .0
            .iter()
            .find(|(k, _)| format!("{k:?}").contains(key))
            .map(|(_, v)| v)
    }

    #[test]
    fn annotations_have_the_types_the_client_needs() {
        let mut out = Vec::new();
        encode_event(&typical_event(&[7; 256], None), &mut out);
        let sections = Sections::split(&out).expect("well-formed");
        assert!(sections.delivery_annotations.is_none());
        let annotations: MessageAnnotations =
            serde_amqp::from_slice(sections.message_annotations.expect("present"))
                .expect("decodes");
        assert_eq!(
            annotation(&annotations, "x-opt-sequence-number"),
            Some(&Value::Long(42))
        );
        assert_eq!(
            annotation(&annotations, "x-opt-offset"),
            Some(&Value::String("8192".into()))
        );
        assert_eq!(
            annotation(&annotations, "x-opt-enqueued-time"),
            Some(&Value::Timestamp(Timestamp::from_milliseconds(
                1_700_000_000_123
            )))
        );
        assert_eq!(
            annotation(&annotations, "iothub-enqueuedtime"),
            Some(&Value::Timestamp(Timestamp::from_milliseconds(
                1_700_000_000_100
            )))
        );
        assert_eq!(
            annotation(&annotations, "iothub-connection-device-id"),
            Some(&Value::String("dev1".into()))
        );
        assert_eq!(
            annotation(&annotations, "iothub-connection-module-id"),
            None
        );
        assert_eq!(annotations.0.len(), 8);
        // Keys are symbols: a3 <len> right after the map header (map32 here: the auth
        // method JSON makes the section longer than 255 bytes).
        let ma = sections.message_annotations.expect("present");
        assert_eq!(&ma[..4], &[0x00, 0x53, 0x72, 0xd1]);
        assert_eq!(ma[12], 0xa3);
    }

    #[test]
    fn properties_use_symbols_and_keep_id_types() {
        let mut out = Vec::new();
        let uuid = [9; 16];
        let mut event = typical_event(b"x", None);
        event.properties.correlation_id = Some(MessageIdRef::Uuid(&uuid));
        event.properties.user_id = Some(b"hub");
        encode_event(&event, &mut out);
        let sections = Sections::split(&out).expect("well-formed");
        let properties: Properties =
            serde_amqp::from_slice(sections.properties.expect("present")).expect("decodes");
        assert_eq!(
            properties.message_id,
            Some(MessageId::String("msg-1".into()))
        );
        assert!(matches!(
            properties.correlation_id,
            Some(MessageId::Uuid(_))
        ));
        assert_eq!(
            properties.user_id.map(|u| u.to_vec()),
            Some(b"hub".to_vec())
        );
        assert_eq!(
            properties.content_type.map(|s| s.0),
            Some("application/json".into())
        );
        // content-type is field 6: a symbol (a3), not a string (a1).
        assert_eq!(sections.properties_field(6).map(|f| f[0]), Some(0xa3));
        assert_eq!(
            sections.decode_application_properties().expect("decodes")[0].0,
            "temperature"
        );
        assert_eq!(sections.data_body().expect("decodes"), Some(b"x".to_vec()));
    }

    #[test]
    fn runtime_metrics_go_into_delivery_annotations() {
        let metrics = RuntimeMetrics {
            last_enqueued_sequence_number: 99,
            last_enqueued_offset: "123456",
            last_enqueued_time_ms: 1_700_000_001_000,
            retrieval_time_ms: 1_700_000_002_000,
        };
        let mut out = Vec::new();
        encode_event(&typical_event(b"x", Some(metrics)), &mut out);
        let sections = Sections::split(&out).expect("well-formed");
        let da: DeliveryAnnotations =
            serde_amqp::from_slice(sections.delivery_annotations.expect("present"))
                .expect("decodes");
        let values: Vec<&Value> = da.0.values().collect();
        assert_eq!(values[0], &Value::Long(99));
        assert_eq!(values[1], &Value::String("123456".into()));
        assert!(matches!(values[2], Value::Timestamp(_)));
        assert!(matches!(values[3], Value::Timestamp(_)));
    }

    #[test]
    fn large_bodies_and_many_properties_switch_to_32_bit_encodings() {
        let keys: Vec<(String, String)> = (0..40)
            .map(|i| (format!("key-{i}"), format!("value-{i}")))
            .collect();
        let pairs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let body = vec![1; 70_000];
        let mut event = typical_event(&body, None);
        event.application_properties = &pairs;
        let mut out = Vec::new();
        encode_event(&event, &mut out);
        let sections = Sections::split(&out).expect("well-formed");
        assert_eq!(
            sections
                .decode_application_properties()
                .expect("decodes")
                .len(),
            40
        );
        assert_eq!(
            sections.data_body().expect("decodes").map(|b| b.len()),
            Some(70_000)
        );
    }
}
