//! Node addresses and the Event Hubs selector filter.
//!
//! Clients write full URLs (`amqps://{host}/{hub}/ConsumerGroups/{cg}/Partitions/{pid}`,
//! `amqps://{host}/messages/devicebound`) or bare paths (`$cbs`). Only the path counts: the
//! scheme is `amqps` even over plain TCP, and the host may carry a port or be a custom
//! endpoint, so both are ignored. Fixed path segments match case-insensitively; names
//! (hub, consumer group, device) keep the client's case.

use crate::error::Condition;

/// What a link's node address names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAddress {
    /// `$cbs`: claims-based security, put-token requests.
    Cbs,
    /// `$management`: Event Hubs READ requests.
    Management,
    /// An Event Hubs partition of a consumer group.
    Partition(PartitionAddress),
    /// `/messages/devicebound`: the service sends cloud-to-device messages.
    ServiceDeviceBound,
    /// `/devices/{id}/messages/events`: a device sends telemetry.
    DeviceEvents {
        /// The device id.
        device_id: String,
    },
    /// `/devices/{id}/modules/{module}/messages/events`: a module sends telemetry.
    ModuleEvents {
        /// The device id.
        device_id: String,
        /// The module id.
        module_id: String,
    },
    /// `/devices/{id}/messages/devicebound`: a device receives cloud-to-device messages.
    DeviceBound {
        /// The device id.
        device_id: String,
    },
    /// Anything else, as given.
    Other(String),
}

/// `{hub}/ConsumerGroups/{cg}/Partitions/{pid}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAddress {
    /// The event hub (entity path).
    pub hub: String,
    /// The consumer group, e.g. `$Default`.
    pub consumer_group: String,
    /// The partition id, e.g. `0`.
    pub partition: String,
}

/// An address that does not name a partition. The caller refuses the link with
/// [`AddressError::condition`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address {address:?} does not name a consumer-group partition")]
pub struct AddressError {
    /// The address as received.
    pub address: String,
}

impl AddressError {
    /// The condition to refuse the link with.
    pub fn condition(&self) -> Condition {
        Condition::NotFound
    }
}

/// The path of an address: the part after `scheme://host`, without leading or trailing `/`.
pub fn path(address: &str) -> &str {
    let after_scheme = match address.find("://") {
        Some(at) => {
            let rest = &address[at + 3..];
            rest.find('/').map_or("", |slash| &rest[slash..])
        }
        None => address,
    };
    after_scheme.trim_matches('/')
}

impl NodeAddress {
    /// Classifies an address.
    pub fn parse(address: &str) -> Self {
        let path = path(address);
        let segments: Vec<&str> = path.split('/').collect();
        let is = |segment: &str, expected: &str| segment.eq_ignore_ascii_case(expected);
        match segments[..] {
            ["$cbs"] => Self::Cbs,
            ["$management"] => Self::Management,
            [hub, cg_word, cg, partitions_word, partition]
                if is(cg_word, "consumergroups") && is(partitions_word, "partitions") =>
            {
                Self::Partition(PartitionAddress {
                    hub: hub.to_string(),
                    consumer_group: cg.to_string(),
                    partition: partition.to_string(),
                })
            }
            [messages, devicebound]
                if is(messages, "messages") && is(devicebound, "devicebound") =>
            {
                Self::ServiceDeviceBound
            }
            [devices, device_id, messages, events]
                if is(devices, "devices") && is(messages, "messages") && is(events, "events") =>
            {
                Self::DeviceEvents {
                    device_id: device_id.to_string(),
                }
            }
            [devices, device_id, messages, devicebound]
                if is(devices, "devices")
                    && is(messages, "messages")
                    && is(devicebound, "devicebound") =>
            {
                Self::DeviceBound {
                    device_id: device_id.to_string(),
                }
            }
            [devices, device_id, modules, module_id, messages, events]
                if is(devices, "devices")
                    && is(modules, "modules")
                    && is(messages, "messages")
                    && is(events, "events") =>
            {
                Self::ModuleEvents {
                    device_id: device_id.to_string(),
                    module_id: module_id.to_string(),
                }
            }
            _ => Self::Other(address.to_string()),
        }
    }
}

impl PartitionAddress {
    /// Parses `[scheme://host]/{hub}/ConsumerGroups/{cg}/Partitions/{pid}`.
    pub fn parse(address: &str) -> Result<Self, AddressError> {
        match NodeAddress::parse(address) {
            NodeAddress::Partition(partition) => Ok(partition),
            _ => Err(AddressError {
                address: address.to_string(),
            }),
        }
    }
}

/// The symbolic descriptor of the selector filter, as azure-eventhub sends it.
pub const SELECTOR_FILTER_NAME: &str = "apache.org:selector-filter:string";
/// The numeric descriptor of the selector filter, as other SDKs send it.
pub const SELECTOR_FILTER_CODE: u64 = 0x0000_468C_0000_0004;

/// Where a partition receiver starts, from its selector filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// `x-opt-offset > '-1'`: the first event retained.
    Start,
    /// `x-opt-offset > '@latest'`: only events enqueued after the attach.
    Latest,
    /// After (or at, when inclusive) an offset. Offsets are opaque strings to clients.
    Offset {
        /// The offset as the client sent it.
        offset: String,
        /// `>=` rather than `>`.
        inclusive: bool,
    },
    /// After (or at) a sequence number.
    SequenceNumber {
        /// The sequence number.
        sequence_number: i64,
        /// `>=` rather than `>`.
        inclusive: bool,
    },
    /// After (or at) an enqueued time.
    EnqueuedTime {
        /// Milliseconds since the Unix epoch.
        milliseconds: i64,
        /// `>=` rather than `>`.
        inclusive: bool,
    },
}

/// A selector expression we cannot turn into a start position. The caller refuses the link
/// with [`FilterError::condition`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// Not `<annotation> <op> '<value>'`.
    #[error("selector {0:?} is not `<annotation> <op> '<value>'`")]
    Syntax(String),
    /// An annotation other than x-opt-offset, x-opt-sequence-number, x-opt-enqueued-time.
    #[error("selector on unsupported annotation {0:?}")]
    UnknownAnnotation(String),
    /// An operator other than `>` and `>=`.
    #[error("unsupported selector operator {0:?}")]
    UnknownOperator(String),
    /// A sequence number or time that is not an integer.
    #[error("selector value {0:?} is not an integer")]
    NotANumber(String),
}

impl FilterError {
    /// The condition to refuse the link with.
    pub fn condition(&self) -> Condition {
        Condition::InvalidField
    }
}

impl StartPosition {
    /// Parses a selector expression such as `amqp.annotation.x-opt-offset > '-1'`.
    pub fn parse_selector(expression: &str) -> Result<Self, FilterError> {
        let syntax = || FilterError::Syntax(expression.to_string());
        let trimmed = expression.trim();
        let operator_at = trimmed.find(['>', '<', '=']).ok_or_else(syntax)?;
        let annotation = trimmed[..operator_at].trim();
        let rest = &trimmed[operator_at..];
        let operator_len = rest
            .find(|c: char| !matches!(c, '>' | '<' | '='))
            .unwrap_or(rest.len());
        let operator = &rest[..operator_len];
        let inclusive = match operator {
            ">" => false,
            ">=" => true,
            other => return Err(FilterError::UnknownOperator(other.to_string())),
        };
        let value = rest[operator_len..].trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(value);
        if value.is_empty() {
            return Err(syntax());
        }
        let name = annotation.to_ascii_lowercase();
        let name = name.strip_prefix("amqp.annotation.").unwrap_or(&name);
        let number = || {
            value
                .parse::<i64>()
                .map_err(|_| FilterError::NotANumber(value.to_string()))
        };
        match name {
            "x-opt-offset" => Ok(match value {
                "-1" => Self::Start,
                "@latest" => Self::Latest,
                _ => Self::Offset {
                    offset: value.to_string(),
                    inclusive,
                },
            }),
            "x-opt-sequence-number" => Ok(Self::SequenceNumber {
                sequence_number: number()?,
                inclusive,
            }),
            "x-opt-enqueued-time" => Ok(Self::EnqueuedTime {
                milliseconds: number()?,
                inclusive,
            }),
            _ => Err(FilterError::UnknownAnnotation(annotation.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_address_ignores_scheme_host_and_case() {
        let address = "amqps://localhost:15672/hub/consumergroups/$Default/PARTITIONS/3";
        assert_eq!(
            PartitionAddress::parse(address),
            Ok(PartitionAddress {
                hub: "hub".into(),
                consumer_group: "$Default".into(),
                partition: "3".into(),
            })
        );
        assert!(PartitionAddress::parse("amqps://h/hub/Partitions/3").is_err());
    }

    #[test]
    fn node_addresses_are_classified_by_path() {
        assert_eq!(NodeAddress::parse("$cbs"), NodeAddress::Cbs);
        assert_eq!(NodeAddress::parse("$management"), NodeAddress::Management);
        assert_eq!(
            NodeAddress::parse("amqps://localhost/messages/devicebound"),
            NodeAddress::ServiceDeviceBound
        );
        assert_eq!(
            NodeAddress::parse("amqps://h/devices/dev1/messages/events"),
            NodeAddress::DeviceEvents {
                device_id: "dev1".into()
            }
        );
        assert_eq!(
            NodeAddress::parse("/devices/d/modules/m/messages/events"),
            NodeAddress::ModuleEvents {
                device_id: "d".into(),
                module_id: "m".into()
            }
        );
        assert_eq!(
            NodeAddress::parse("amqps://h/devices/d/messages/deviceBound"),
            NodeAddress::DeviceBound {
                device_id: "d".into()
            }
        );
        assert_eq!(
            NodeAddress::parse("queue"),
            NodeAddress::Other("queue".into())
        );
    }

    #[test]
    fn selectors_of_every_starting_position_parse() {
        let cases = [
            ("amqp.annotation.x-opt-offset > '-1'", StartPosition::Start),
            (
                "amqp.annotation.x-opt-offset > '@latest'",
                StartPosition::Latest,
            ),
            (
                "amqp.annotation.x-opt-offset >= '4096'",
                StartPosition::Offset {
                    offset: "4096".into(),
                    inclusive: true,
                },
            ),
            (
                "amqp.annotation.x-opt-sequence-number > '5'",
                StartPosition::SequenceNumber {
                    sequence_number: 5,
                    inclusive: false,
                },
            ),
            (
                "amqp.annotation.x-opt-sequence-number >= '5'",
                StartPosition::SequenceNumber {
                    sequence_number: 5,
                    inclusive: true,
                },
            ),
            (
                "amqp.annotation.x-opt-enqueued-time > '1700000000000'",
                StartPosition::EnqueuedTime {
                    milliseconds: 1_700_000_000_000,
                    inclusive: false,
                },
            ),
            (
                "AMQP.ANNOTATION.X-OPT-SEQUENCE-NUMBER>=7",
                StartPosition::SequenceNumber {
                    sequence_number: 7,
                    inclusive: true,
                },
            ),
        ];
        for (selector, expected) in cases {
            assert_eq!(
                StartPosition::parse_selector(selector),
                Ok(expected),
                "{selector}"
            );
        }
    }

    #[test]
    fn bad_selectors_are_refused() {
        assert!(matches!(
            StartPosition::parse_selector("amqp.annotation.x-opt-offset < '1'"),
            Err(FilterError::UnknownOperator(_))
        ));
        assert!(matches!(
            StartPosition::parse_selector("amqp.annotation.x-opt-sequence-number > 'abc'"),
            Err(FilterError::NotANumber(_))
        ));
        assert!(matches!(
            StartPosition::parse_selector("amqp.annotation.x-opt-partition-key > 'a'"),
            Err(FilterError::UnknownAnnotation(_))
        ));
        assert!(matches!(
            StartPosition::parse_selector("nonsense"),
            Err(FilterError::Syntax(_))
        ));
        assert!(matches!(
            StartPosition::parse_selector("amqp.annotation.x-opt-offset > ''"),
            Err(FilterError::Syntax(_))
        ));
    }
}
