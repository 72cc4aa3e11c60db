//! `$cbs` and `$management` requests: what a request carries, the put-token and READ
//! helpers, and the response bodies.
//!
//! Both nodes are a link pair on one session: the client's sender delivers requests to the
//! node, and the client's receiver (source = the same node, no reply-to) gets the responses.
//! The connection answers [`crate::Connection::respond`] on that receiver with
//! `correlation-id` = the request's message-id, byte for byte (uuid from azure-eventhub,
//! ulong from uamqp), an **int** `status-code` and both description spellings.

use fe2o3_amqp_types::messaging::MessageId;
use fe2o3_amqp_types::primitives::SimpleValue;
use serde_amqp::Value;
use serde_amqp::primitives::{Array, OrderedMap, Timestamp};

use crate::connection::{LinkId, RequestId};
use crate::error::MessageError;

/// Which management node a request was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagementNode {
    /// `$cbs`.
    Cbs,
    /// `$management`.
    Management,
}

/// A request delivered to `$cbs` or `$management`, waiting for
/// [`crate::Connection::respond`].
#[derive(Debug, Clone, PartialEq)]
pub struct ManagementRequest {
    /// The id to answer with.
    pub request: RequestId,
    /// The client's sender link the request came on.
    pub link: LinkId,
    /// The node.
    pub node: ManagementNode,
    /// `properties.message-id`, in its AMQP type.
    pub message_id: Option<MessageId>,
    /// Application properties in wire order.
    pub application_properties: Vec<(String, SimpleValue)>,
    /// The amqp-value body, if the body is one.
    pub body: Option<Value>,
}

impl ManagementRequest {
    /// A string application property.
    pub fn property_str(&self, key: &str) -> Option<&str> {
        self.application_properties
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| match v {
                SimpleValue::String(s) => Some(s.as_str()),
                SimpleValue::Symbol(s) => Some(s.as_str()),
                _ => None,
            })
    }

    /// The `operation` application property: `put-token`, `READ`.
    pub fn operation(&self) -> Option<&str> {
        self.property_str("operation")
    }
}

fn missing(field: &'static str) -> MessageError {
    MessageError::MissingField { field }
}

/// A CBS put-token request, from azure-eventhub or from the IoT Hub service SDK (uamqp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutToken {
    /// `name`: the audience, `sb://{host}/{hub}[/consumergroups/{cg}]` or `https://{host}`.
    pub audience: String,
    /// `type`: `servicebus.windows.net:sastoken`, or `jwt`.
    pub token_type: String,
    /// The body: `SharedAccessSignature sr=…&sig=…&se=…&skn=…`.
    pub token: String,
    /// `expiration`, milliseconds since the Unix epoch, when sent.
    pub expiration_ms: Option<i64>,
}

impl PutToken {
    /// The `type` of a shared access signature.
    pub const SAS_TOKEN_TYPE: &'static str = "servicebus.windows.net:sastoken";

    /// Reads a put-token out of a `$cbs` request.
    pub fn from_request(request: &ManagementRequest) -> Result<Self, MessageError> {
        if request.operation() != Some("put-token") {
            return Err(missing("operation = put-token"));
        }
        let audience = request
            .property_str("name")
            .ok_or_else(|| missing("name"))?;
        let token_type = request
            .property_str("type")
            .ok_or_else(|| missing("type"))?;
        let token = match &request.body {
            Some(Value::String(token)) => token.clone(),
            Some(Value::Binary(bytes)) => {
                String::from_utf8(bytes.to_vec()).map_err(|_| missing("token body"))?
            }
            _ => return Err(missing("token body")),
        };
        let expiration_ms = request
            .application_properties
            .iter()
            .find(|(k, _)| k == "expiration")
            .and_then(|(_, v)| match v {
                SimpleValue::Timestamp(t) => Some(t.milliseconds()),
                SimpleValue::Long(n) => Some(*n),
                SimpleValue::Ulong(n) => i64::try_from(*n).ok(),
                _ => None,
            });
        Ok(Self {
            audience: audience.to_string(),
            token_type: token_type.to_string(),
            token,
            expiration_ms,
        })
    }
}

/// A `$management` READ request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadRequest {
    /// `type = com.microsoft:eventhub`.
    EventHub {
        /// `name`: the hub.
        name: String,
        /// `security_token`: the SAS token again, if sent.
        security_token: Option<String>,
    },
    /// `type = com.microsoft:partition`.
    Partition {
        /// `name`: the hub.
        name: String,
        /// `partition`: the partition id.
        partition: String,
        /// `security_token`, if sent.
        security_token: Option<String>,
    },
}

impl ReadRequest {
    /// Reads a READ out of a `$management` request.
    pub fn from_request(request: &ManagementRequest) -> Result<Self, MessageError> {
        if request.operation() != Some("READ") {
            return Err(missing("operation = READ"));
        }
        let name = request
            .property_str("name")
            .ok_or_else(|| missing("name"))?
            .to_string();
        let security_token = request.property_str("security_token").map(str::to_string);
        match request.property_str("type") {
            Some("com.microsoft:eventhub") => Ok(Self::EventHub {
                name,
                security_token,
            }),
            Some("com.microsoft:partition") => {
                let partition = request
                    .property_str("partition")
                    .ok_or_else(|| missing("partition"))?;
                Ok(Self::Partition {
                    name,
                    partition: partition.to_string(),
                    security_token,
                })
            }
            _ => Err(missing("type")),
        }
    }
}

/// The body of a READ `com.microsoft:eventhub` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHubProperties {
    /// `name`.
    pub name: String,
    /// `created_at`, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// `partition_ids`.
    pub partition_ids: Vec<String>,
}

impl EventHubProperties {
    /// The amqp-value map with the exact types clients expect: string, timestamp, array of string.
    pub fn to_value(&self) -> Value {
        let mut map = OrderedMap::new();
        map.insert(key("name"), Value::String(self.name.clone()));
        map.insert(key("type"), Value::String("com.microsoft:eventhub".into()));
        map.insert(key("created_at"), timestamp(self.created_at_ms));
        let ids = self
            .partition_ids
            .iter()
            .cloned()
            .map(Value::String)
            .collect::<Vec<_>>();
        map.insert(key("partition_count"), Value::Int(ids.len() as i32));
        map.insert(key("partition_ids"), Value::Array(Array(ids)));
        Value::Map(map)
    }
}

/// The body of a READ `com.microsoft:partition` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProperties {
    /// `name`: the hub.
    pub name: String,
    /// `partition`: the partition id.
    pub partition: String,
    /// `begin_sequence_number`.
    pub begin_sequence_number: i64,
    /// `last_enqueued_sequence_number`.
    pub last_enqueued_sequence_number: i64,
    /// `last_enqueued_offset`: a **string** (a long crashes the client).
    pub last_enqueued_offset: String,
    /// `last_enqueued_time_utc`, milliseconds since the Unix epoch.
    pub last_enqueued_time_ms: i64,
    /// `is_partition_empty`.
    pub is_partition_empty: bool,
}

impl PartitionProperties {
    /// The amqp-value map with the exact types clients expect.
    pub fn to_value(&self) -> Value {
        let mut map = OrderedMap::new();
        map.insert(key("name"), Value::String(self.name.clone()));
        map.insert(key("type"), Value::String("com.microsoft:partition".into()));
        map.insert(key("partition"), Value::String(self.partition.clone()));
        map.insert(
            key("begin_sequence_number"),
            Value::Long(self.begin_sequence_number),
        );
        map.insert(
            key("last_enqueued_sequence_number"),
            Value::Long(self.last_enqueued_sequence_number),
        );
        map.insert(
            key("last_enqueued_offset"),
            Value::String(self.last_enqueued_offset.clone()),
        );
        map.insert(
            key("last_enqueued_time_utc"),
            timestamp(self.last_enqueued_time_ms),
        );
        map.insert(
            key("is_partition_empty"),
            Value::Bool(self.is_partition_empty),
        );
        Value::Map(map)
    }
}

fn key(name: &str) -> Value {
    Value::String(name.to_string())
}

fn timestamp(milliseconds: i64) -> Value {
    Value::Timestamp(Timestamp::from_milliseconds(milliseconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_ids_encode_as_an_array_of_strings() {
        let properties = EventHubProperties {
            name: "hub".into(),
            created_at_ms: 1_700_000_000_000,
            partition_ids: vec!["0".into(), "1".into()],
        };
        let bytes = serde_amqp::to_vec(&properties.to_value()).expect("encodes");
        // array8, size, count 2, element constructor str32 (serde_amqp's choice inside
        // arrays; pyamqp decodes it), then "0" and "1".
        let needle = [0xe0, 0x0c, 0x02, 0xb1, 0, 0, 0, 1, b'0', 0, 0, 0, 1, b'1'];
        assert!(
            bytes.windows(needle.len()).any(|w| w == needle),
            "{bytes:02x?}"
        );
        // created_at is a timestamp.
        assert!(bytes.windows(2).any(|w| w == [0x83, 0x00]));
    }

    #[test]
    fn partition_properties_keep_the_offset_a_string() {
        let properties = PartitionProperties {
            name: "hub".into(),
            partition: "0".into(),
            begin_sequence_number: 0,
            last_enqueued_sequence_number: 9,
            last_enqueued_offset: "4096".into(),
            last_enqueued_time_ms: 1,
            is_partition_empty: false,
        };
        let Value::Map(map) = properties.to_value() else {
            panic!("a map")
        };
        assert_eq!(
            map.get(&key("last_enqueued_offset")),
            Some(&Value::String("4096".into()))
        );
        assert_eq!(
            map.get(&key("last_enqueued_sequence_number")),
            Some(&Value::Long(9))
        );
        assert_eq!(
            map.get(&key("is_partition_empty")),
            Some(&Value::Bool(false))
        );
    }
}
