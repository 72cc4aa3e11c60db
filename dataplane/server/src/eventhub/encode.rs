//! A partition-log record as an Event Hubs event message: the record's header gives the
//! `x-opt-*` annotations, its flatbuffers body the IoT Hub system properties, the
//! application properties and the payload (see `dataplane_amqp::event` for the AMQP types).
//!
//! The encoder keeps its scratch space between events, so encoding allocates nothing once it
//! has seen the largest event.

use std::fmt::Write as _;

use dataplane_amqp::event::{
    EventFields, EventProperties, IotHubAnnotations, MessageIdRef, RuntimeMetrics, encode_event,
};
use dataplane_log::{CommittedPosition, RecordView};

/// The last-enqueued figures sent with every event of a batch to receivers that track them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastEnqueued {
    sequence_number: i64,
    offset: String,
    enqueued_time_ms: i64,
    retrieval_time_ms: i64,
}

impl LastEnqueued {
    /// The figures of a committed position, read at `now_ms`; `None` for a partition that
    /// never held a record.
    pub fn of(committed: &CommittedPosition, now_ms: i64) -> Option<Self> {
        committed.last.map(|last| Self {
            sequence_number: last.sequence.0 as i64,
            offset: last.offset.0.to_string(),
            enqueued_time_ms: last.enqueued_ms,
            retrieval_time_ms: now_ms,
        })
    }

    fn as_metrics(&self) -> RuntimeMetrics<'_> {
        RuntimeMetrics {
            last_enqueued_sequence_number: self.sequence_number,
            last_enqueued_offset: &self.offset,
            last_enqueued_time_ms: self.enqueued_time_ms,
            retrieval_time_ms: self.retrieval_time_ms,
        }
    }
}

/// Encodes records as event messages, reusing its buffers.
#[derive(Debug, Default)]
pub struct EventEncoder {
    offset: String,
    /// Application properties of the event being encoded; empty between events.
    properties: Vec<(&'static str, &'static str)>,
}

impl EventEncoder {
    /// Appends the event message for `record` to `out`, with `last` as delivery annotations
    /// when given. Fails only when the record's body does not verify (a damaged record).
    pub fn encode(
        &mut self,
        record: &RecordView<'_>,
        last: Option<&LastEnqueued>,
        out: &mut Vec<u8>,
    ) -> Result<(), dataplane_log::Error> {
        let body = record.body()?;
        self.offset.clear();
        // Writing a number into a String cannot fail.
        let _ = write!(self.offset, "{}", record.offset().0);
        let mut properties = recycle(std::mem::take(&mut self.properties));
        if let Some(list) = body.properties() {
            properties.extend(
                list.iter()
                    .map(|property| (property.key(), property.value())),
            );
        }
        let enqueued_time_ms = record.enqueued_ms();
        // The Plug and Play and security stamps IoT Hub adds as annotations, when present.
        let extra: [(&str, Option<&str>); 3] = [
            ("iothub-interface-id", body.interface_id()),
            ("dt-subject", body.component_name()),
            ("dt-dataschema", body.data_schema()),
        ];
        let mut extra_annotations = [("", ""); 3];
        let mut extra_count = 0;
        for (key, value) in extra {
            if let Some(value) = value {
                extra_annotations[extra_count] = (key, value);
                extra_count += 1;
            }
        }
        let fields = EventFields {
            sequence_number: record.sequence().0 as i64,
            offset: &self.offset,
            enqueued_time_ms,
            partition_key: None,
            iothub: IotHubAnnotations {
                device_id: body.connection_device_id(),
                module_id: body.connection_module_id(),
                auth_method: body.auth_method(),
                auth_generation_id: body.auth_generation_id(),
                enqueued_time_ms: Some(enqueued_time_ms),
                message_source: body.message_source(),
            },
            extra_annotations: &extra_annotations[..extra_count],
            properties: EventProperties {
                message_id: body.message_id().map(MessageIdRef::String),
                user_id: body.user_id().map(|bytes| bytes.bytes()),
                correlation_id: body.correlation_id().map(MessageIdRef::String),
                content_type: body.content_type(),
                content_encoding: body.content_encoding(),
                absolute_expiry_time_ms: body.expiry_time_ms(),
                creation_time_ms: body.creation_time_ms(),
            },
            application_properties: &properties,
            body: body.payload().bytes(),
            runtime_metrics: last.map(LastEnqueued::as_metrics),
        };
        encode_event(&fields, out);
        self.properties = recycle(properties);
        Ok(())
    }
}

/// Empties a vector of borrowed pairs and gives its allocation a new lifetime, so one buffer
/// serves every event. Collecting an emptied `vec::IntoIter` into a vector of a type of the same
/// size reuses the allocation; nothing is copied.
fn recycle<'to>(mut pairs: Vec<(&str, &str)>) -> Vec<(&'to str, &'to str)> {
    pairs.clear();
    pairs.into_iter().map(|_| ("", "")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane_amqp::message::Sections;
    use dataplane_log::{Partition, PartitionConfig, PartitionId, RecordInput, StartPosition};

    #[test]
    fn a_record_becomes_an_event_with_its_system_and_application_properties() {
        // Setup: one record with every system property, appended to a fresh partition and read
        // back through a cursor. Expectation: the encoded message decodes with the offset as a
        // string, the sequence number and times, the iothub annotations and the properties.
        let dir = tempfile::tempdir().unwrap();
        let config = PartitionConfig {
            segment_bytes: 1 << 20,
            ..PartitionConfig::default()
        };
        let (mut partition, _) = Partition::open(dir.path(), PartitionId(0), config).unwrap();
        let record = RecordInput {
            message_id: Some("m-1"),
            correlation_id: Some("c-1"),
            content_type: Some("application/json"),
            content_encoding: Some("utf-8"),
            connection_device_id: Some("dev1"),
            message_source: Some("Telemetry"),
            properties: &[("a", "1"), ("b", "two")],
            payload: b"{\"t\":1}",
            ..RecordInput::default()
        };
        partition
            .append(&[record, record], 1_700_000_000_000)
            .unwrap();
        partition.flush_now().unwrap();
        let reader = partition.reader();
        let mut cursor = reader.cursor(StartPosition::Earliest);
        let mut encoder = EventEncoder::default();
        let mut out = Vec::new();
        let last = LastEnqueued::of(&reader.committed(), 1_700_000_000_500);
        let mut offsets = Vec::new();
        while let Some(view) = cursor.next().unwrap() {
            out.clear();
            encoder.encode(&view, last.as_ref(), &mut out).unwrap();
            offsets.push(view.offset().0);
            let sections = Sections::split(&out).unwrap();
            let annotations = serde_amqp::from_slice::<serde_amqp::Value>(
                &sections.message_annotations.unwrap()[3..],
            )
            .unwrap();
            let text = format!("{annotations:?}");
            let offset = format!("String(\"{}\")", view.offset().0);
            assert!(text.contains(&offset), "{text}");
            assert!(text.contains("dev1"), "{text}");
            let properties = sections.decode_application_properties().unwrap();
            assert_eq!(properties.len(), 2);
            assert_eq!(properties[1].0, "b");
            assert_eq!(sections.data_body().unwrap().unwrap(), b"{\"t\":1}");
            assert!(sections.delivery_annotations.is_some());
            let content_type = sections.decode_properties().unwrap().unwrap().content_type;
            assert_eq!(content_type.unwrap().0, "application/json");
        }
        assert_eq!(offsets.len(), 2);
        assert!(encoder.properties.is_empty());
    }
}
