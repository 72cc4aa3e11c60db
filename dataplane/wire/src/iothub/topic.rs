//! IoT Hub's MQTT topics: what a device publishes and subscribes to, and what the server
//! publishes to it.
//!
//! ```text
//! device publishes                                          [PublishTopic]
//!   devices/{d}/messages/events[/[{props}]]                 telemetry
//!   devices/{d}/modules/{m}/messages/events[/[{props}]]     module telemetry, output ($.on)
//!   $iothub/twin/GET/?$rid={rid}                            twin read
//!   $iothub/twin/PATCH/properties/reported/?$rid={rid}      reported properties
//!   $iothub/methods/res/{status}/?$rid={rid}                direct method response
//! device subscribes                                         [Subscription]
//!   devices/{d}/messages/devicebound/#                      C2D (devices only)
//!   devices/{d}/modules/{m}/inputs/#                        module inputs
//!   $iothub/methods/POST/#   $iothub/twin/res/#   $iothub/twin/PATCH/properties/desired/#
//! server publishes                                          [DeliveryTopic], write_* builders
//!   devices/{d}/messages/devicebound/{props}                C2D
//!   devices/{d}/modules/{m}/inputs/{input}/{props}          module input
//!   $iothub/methods/POST/{method}/?$rid={rid}               direct method request
//!   $iothub/twin/res/{status}/?$rid={rid}[&$version={n}]    twin response
//!   $iothub/twin/PATCH/properties/desired/?$version={n}     desired properties patch
//! ```
//!
//! Ids appear raw in topics, as the SDK writes them; property bags, method names and input
//! names are percent-encoded, so a topic never holds a `/` the SDK would split on. Request ids
//! are copied as they came: the server echoes a device's `$rid` byte for byte, and generates
//! its own from URL-safe characters.
//!
//! Parsers borrow from the topic and check that it names the connected identity.

use std::borrow::Cow;
use std::fmt::Write as _;

use percent_encoding::utf8_percent_encode;

use super::properties::percent_decode;
use super::{ClientId, Error, PropertyWriter};
use crate::sas::QUOTE_SAFE_NOTHING;

/// A topic a device publishes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishTopic<'a> {
    /// D2C telemetry, from a device or a module. `properties` is the raw bag, possibly empty;
    /// parse it with [`super::MessageProperties::parse`].
    Telemetry {
        /// The percent-encoded property bag.
        properties: &'a str,
    },
    /// A request for the whole twin; answered on `$iothub/twin/res/`.
    TwinGet {
        /// The request id to echo.
        rid: &'a str,
    },
    /// A reported-properties patch (JSON body); answered on `$iothub/twin/res/`.
    TwinPatchReported {
        /// The request id to echo.
        rid: &'a str,
    },
    /// The device's answer to a direct method request.
    MethodResponse {
        /// The status the device reports, any integer.
        status: i32,
        /// The id of the method request.
        rid: &'a str,
    },
}

impl<'a> PublishTopic<'a> {
    /// Parses a PUBLISH topic from the connection authenticated as `client`.
    pub fn parse(topic: &'a str, client: &ClientId<'_>) -> Result<Self, Error> {
        if let Some(rest) = topic.strip_prefix("$iothub/") {
            return parse_iothub_publish(rest);
        }
        let invalid = |detail| Error::InvalidPublishTopic { detail };
        let rest = topic.strip_prefix("devices/").ok_or(invalid(
            "not devices/{id}/messages/events/ nor a $iothub twin or method topic",
        ))?;
        let (device_id, rest) = rest
            .split_once('/')
            .ok_or(invalid("nothing after the device id"))?;
        let (module_id, rest) = match rest.strip_prefix("modules/") {
            Some(rest) => {
                let (module_id, rest) = rest
                    .split_once('/')
                    .ok_or(invalid("nothing after the module id"))?;
                (Some(module_id), rest)
            }
            None => (None, rest),
        };
        let properties = match rest.strip_prefix("messages/events") {
            Some("") => "",
            Some(rest) => rest
                .strip_prefix('/')
                .ok_or(invalid("text after messages/events without a '/'"))?,
            None => return Err(invalid("a device may publish only to messages/events")),
        };
        if !client.is(device_id, module_id) {
            return Err(Error::TopicIdentityMismatch);
        }
        Ok(Self::Telemetry { properties })
    }
}

fn parse_iothub_publish(rest: &str) -> Result<PublishTopic<'_>, Error> {
    let invalid = |detail| Error::InvalidPublishTopic { detail };
    if let Some(query) = rest.strip_prefix("twin/GET/?") {
        return Ok(PublishTopic::TwinGet {
            rid: request_id(query).ok_or(invalid("a twin GET without $rid"))?,
        });
    }
    if let Some(query) = rest.strip_prefix("twin/PATCH/properties/reported/?") {
        return Ok(PublishTopic::TwinPatchReported {
            rid: request_id(query).ok_or(invalid("a reported patch without $rid"))?,
        });
    }
    if let Some(rest) = rest.strip_prefix("methods/res/") {
        let (status, query) = rest
            .split_once("/?")
            .ok_or(invalid("a method response without /?$rid="))?;
        let status = status
            .parse()
            .map_err(|_| invalid("the method response status is not an integer"))?;
        let rid = request_id(query).ok_or(invalid("a method response without $rid"))?;
        return Ok(PublishTopic::MethodResponse { status, rid });
    }
    Err(invalid(
        "not $iothub/twin/GET/, $iothub/twin/PATCH/properties/reported/ or $iothub/methods/res/",
    ))
}

/// The non-empty `$rid` of a query string.
fn request_id(query: &str) -> Option<&str> {
    query_value(query, "$rid").filter(|rid| !rid.is_empty())
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.split_once('=').filter(|(name, _)| *name == key))
        .map(|(_, value)| value)
}

/// A topic filter a device subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subscription {
    /// `devices/{d}/messages/devicebound/#`: C2D messages. Devices only.
    CloudToDevice,
    /// `devices/{d}/modules/{m}/inputs/#`: messages routed to a module's inputs.
    ModuleInputs,
    /// `$iothub/methods/POST/#`: direct method requests.
    MethodRequests,
    /// `$iothub/twin/res/#`: answers to twin GET and reported patches. The server delivers
    /// them whether or not this is subscribed.
    TwinResponses,
    /// `$iothub/twin/PATCH/properties/desired/#`: desired-property patches.
    DesiredPatches,
}

impl Subscription {
    /// Parses a SUBSCRIBE or UNSUBSCRIBE filter from the connection authenticated as `client`.
    pub fn parse(filter: &str, client: &ClientId<'_>) -> Result<Self, Error> {
        let invalid = |detail| Error::InvalidSubscription { detail };
        match filter {
            "$iothub/methods/POST/#" => return Ok(Self::MethodRequests),
            "$iothub/twin/res/#" => return Ok(Self::TwinResponses),
            "$iothub/twin/PATCH/properties/desired/#" => return Ok(Self::DesiredPatches),
            _ => {}
        }
        let rest = filter.strip_prefix("devices/").ok_or(invalid(
            "not devices/{id}/messages/devicebound/#, devices/{id}/modules/{id}/inputs/# \
             nor a $iothub method or twin filter",
        ))?;
        let (device_id, rest) = rest
            .split_once('/')
            .ok_or(invalid("nothing after the device id"))?;
        if rest == "messages/devicebound/#" {
            if client.is_module() {
                return Err(invalid("modules do not receive cloud-to-device messages"));
            }
            if !client.is(device_id, None) {
                return Err(Error::TopicIdentityMismatch);
            }
            return Ok(Self::CloudToDevice);
        }
        let (module_id, rest) = rest
            .strip_prefix("modules/")
            .and_then(|rest| rest.split_once('/'))
            .ok_or(invalid(
                "not messages/devicebound/# nor modules/{id}/inputs/# after the device id",
            ))?;
        if rest != "inputs/#" {
            return Err(invalid("a module may subscribe only to inputs/#"));
        }
        if !client.is(device_id, Some(module_id)) {
            return Err(Error::TopicIdentityMismatch);
        }
        Ok(Self::ModuleInputs)
    }
}

/// A topic the server publishes to a device, as the device reads it. The server writes these
/// with the `write_*` builders; this parser is for clients (the load generator) and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryTopic<'a> {
    /// A C2D message.
    CloudToDevice {
        /// The device it is for.
        device_id: &'a str,
        /// The raw property bag; parse with [`super::MessageProperties::parse`].
        properties: &'a str,
    },
    /// A message routed to a module input.
    ModuleInput {
        /// The module's device.
        device_id: &'a str,
        /// The module.
        module_id: &'a str,
        /// The input name, decoded.
        input: Cow<'a, str>,
        /// The raw property bag.
        properties: &'a str,
    },
    /// A direct method request.
    MethodRequest {
        /// The method name, decoded.
        method: Cow<'a, str>,
        /// The request id the response must carry.
        rid: &'a str,
    },
    /// The answer to a twin GET or reported patch.
    TwinResponse {
        /// HTTP-like status: 200 for GET, 204 for a patch, 4xx/5xx on failure.
        status: u16,
        /// The device's request id.
        rid: &'a str,
        /// The reported version after a patch.
        version: Option<u64>,
    },
    /// A desired-properties patch.
    DesiredPatch {
        /// The desired version the patch brings the twin to.
        version: u64,
    },
}

impl<'a> DeliveryTopic<'a> {
    /// Parses a topic the server published.
    pub fn parse(topic: &'a str) -> Result<Self, Error> {
        let invalid = |detail| Error::InvalidPublishTopic { detail };
        if let Some(rest) = topic.strip_prefix("$iothub/methods/POST/") {
            let (method, query) = rest
                .split_once("/?")
                .ok_or(invalid("a method request without /?$rid="))?;
            let rid = request_id(query).ok_or(invalid("a method request without $rid"))?;
            return Ok(Self::MethodRequest {
                method: percent_decode(method),
                rid,
            });
        }
        if let Some(rest) = topic.strip_prefix("$iothub/twin/res/") {
            let (status, query) = rest
                .split_once("/?")
                .ok_or(invalid("a twin response without /?$rid="))?;
            let status = status
                .parse()
                .map_err(|_| invalid("the twin response status is not an integer"))?;
            let rid = request_id(query).ok_or(invalid("a twin response without $rid"))?;
            let version = query_value(query, "$version")
                .map(str::parse)
                .transpose()
                .map_err(|_| invalid("$version is not an integer"))?;
            return Ok(Self::TwinResponse {
                status,
                rid,
                version,
            });
        }
        if let Some(query) = topic.strip_prefix("$iothub/twin/PATCH/properties/desired/?") {
            let version = query_value(query, "$version")
                .ok_or(invalid("a desired patch without $version"))?
                .parse()
                .map_err(|_| invalid("$version is not an integer"))?;
            return Ok(Self::DesiredPatch { version });
        }
        let rest = topic
            .strip_prefix("devices/")
            .ok_or(invalid("not a topic the server publishes"))?;
        let (device_id, rest) = rest
            .split_once('/')
            .ok_or(invalid("nothing after the device id"))?;
        if let Some(properties) = rest.strip_prefix("messages/devicebound/") {
            return Ok(Self::CloudToDevice {
                device_id,
                properties,
            });
        }
        let (module_id, rest) = rest
            .strip_prefix("modules/")
            .and_then(|rest| rest.split_once('/'))
            .ok_or(invalid(
                "not messages/devicebound/ nor modules/{id}/inputs/",
            ))?;
        let (input, properties) = rest
            .strip_prefix("inputs/")
            .and_then(|rest| rest.split_once('/'))
            .ok_or(invalid("not modules/{id}/inputs/{input}/"))?;
        Ok(Self::ModuleInput {
            device_id,
            module_id,
            input: percent_decode(input),
            properties,
        })
    }
}

/// Writes a telemetry topic for `client` into `out`, replacing its contents, and returns a
/// writer for the property bag. Used by the load generator and tests; devices build their own.
pub fn write_telemetry_topic<'o>(out: &'o mut String, client: &ClientId<'_>) -> PropertyWriter<'o> {
    out.clear();
    out.push_str("devices/");
    out.push_str(client.device_id());
    if let Some(module_id) = client.module_id() {
        out.push_str("/modules/");
        out.push_str(module_id);
    }
    out.push_str("/messages/events/");
    PropertyWriter::new(out)
}

/// Writes a C2D topic for `device_id` into `out`, replacing its contents, and returns a writer
/// for the property bag: `devices/{d}/messages/devicebound/%24.mid=..&%24.to=..&iothub-ack=..`.
pub fn write_c2d_topic<'o>(out: &'o mut String, device_id: &str) -> PropertyWriter<'o> {
    out.clear();
    out.push_str("devices/");
    out.push_str(device_id);
    out.push_str("/messages/devicebound/");
    PropertyWriter::new(out)
}

/// Writes a module input topic into `out`, replacing its contents, and returns a writer for
/// the property bag: `devices/{d}/modules/{m}/inputs/{input}/{props}`.
pub fn write_module_input_topic<'o>(
    out: &'o mut String,
    device_id: &str,
    module_id: &str,
    input: &str,
) -> PropertyWriter<'o> {
    out.clear();
    out.push_str("devices/");
    out.push_str(device_id);
    out.push_str("/modules/");
    out.push_str(module_id);
    out.push_str("/inputs/");
    out.extend(utf8_percent_encode(input, QUOTE_SAFE_NOTHING));
    out.push('/');
    PropertyWriter::new(out)
}

/// Writes `$iothub/methods/POST/{method}/?$rid={rid}` into `out`, replacing its contents.
/// `rid` is the server's own, made of URL-safe characters.
pub fn write_method_request_topic(out: &mut String, method: &str, rid: &str) {
    debug_assert!(
        is_url_safe(rid),
        "the server generates URL-safe request ids"
    );
    out.clear();
    out.push_str("$iothub/methods/POST/");
    out.extend(utf8_percent_encode(method, QUOTE_SAFE_NOTHING));
    out.push_str("/?$rid=");
    out.push_str(rid);
}

/// Writes `$iothub/twin/res/{status}/?$rid={rid}[&$version={version}]` into `out`, replacing
/// its contents. `rid` is echoed exactly as the device sent it.
pub fn write_twin_response_topic(out: &mut String, status: u16, rid: &str, version: Option<u64>) {
    out.clear();
    write!(out, "$iothub/twin/res/{status}/?$rid={rid}").expect("writing to a String");
    if let Some(version) = version {
        write!(out, "&$version={version}").expect("writing to a String");
    }
}

/// Writes `$iothub/twin/PATCH/properties/desired/?$version={version}` into `out`, replacing
/// its contents.
pub fn write_desired_patch_topic(out: &mut String, version: u64) {
    out.clear();
    write!(
        out,
        "$iothub/twin/PATCH/properties/desired/?$version={version}"
    )
    .expect("writing to a String");
}

fn is_url_safe(text: &str) -> bool {
    text.bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iothub::{MessageProperties, SystemProperty};

    const DEV1: &str = "dev1";

    fn device() -> ClientId<'static> {
        ClientId::parse(DEV1).unwrap()
    }

    fn module() -> ClientId<'static> {
        ClientId::parse("dev1/mod1").unwrap()
    }

    #[test]
    fn the_observed_sdk_telemetry_topic_parses() {
        let topic = "devices/dev1/messages/events/%24.mid=mid-1&%24.cid=cid-1&%24.uid=uid&%24.ct=application%2Fjson&%24.ce=utf-8&%24.exp=2030-01-01T00%3A00%3A00%2B00%3A00&a%20b=x%2Fy%26z&b=2";
        let PublishTopic::Telemetry { properties } = PublishTopic::parse(topic, &device()).unwrap()
        else {
            panic!("telemetry expected");
        };
        assert!(properties.starts_with("%24.mid=mid-1&"));
        assert!(properties.ends_with("&b=2"));
        let properties = MessageProperties::parse(properties).unwrap();
        assert_eq!(properties.get(SystemProperty::MessageId), Some("mid-1"));
    }

    #[test]
    fn telemetry_with_no_trailing_segment_or_an_empty_bag_parses() {
        for topic in [
            "devices/dev1/messages/events",
            "devices/dev1/messages/events/",
        ] {
            assert_eq!(
                PublishTopic::parse(topic, &device()),
                Ok(PublishTopic::Telemetry { properties: "" }),
                "{topic}"
            );
        }
        assert_eq!(
            PublishTopic::parse(
                "devices/dev1/modules/mod1/messages/events/%24.on=out1",
                &module()
            ),
            Ok(PublishTopic::Telemetry {
                properties: "%24.on=out1"
            })
        );
        assert_eq!(
            PublishTopic::parse("devices/dev1/modules/mod1/messages/events", &module()),
            Ok(PublishTopic::Telemetry { properties: "" })
        );
    }

    #[test]
    fn telemetry_for_another_identity_is_refused() {
        for (topic, client) in [
            ("devices/dev2/messages/events/", device()),
            ("devices/dev1/modules/mod1/messages/events/", device()),
            ("devices/dev1/messages/events/", module()),
            ("devices/dev1/modules/mod2/messages/events/", module()),
        ] {
            assert_eq!(
                PublishTopic::parse(topic, &client),
                Err(Error::TopicIdentityMismatch),
                "{topic}"
            );
        }
    }

    #[test]
    fn twin_and_method_topics_from_the_sdk_parse() {
        let rid = "6b1b4b23-0c30-4c4c-9d2d-1f4e6f2f0f10";
        assert_eq!(
            PublishTopic::parse(&format!("$iothub/twin/GET/?$rid={rid}"), &device()),
            Ok(PublishTopic::TwinGet { rid })
        );
        assert_eq!(
            PublishTopic::parse(
                &format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}"),
                &module()
            ),
            Ok(PublishTopic::TwinPatchReported { rid })
        );
        assert_eq!(
            PublishTopic::parse("$iothub/methods/res/200/?$rid=1a", &device()),
            Ok(PublishTopic::MethodResponse {
                status: 200,
                rid: "1a"
            })
        );
        assert_eq!(
            PublishTopic::parse("$iothub/methods/res/-1/?x=y&$rid=7", &device()),
            Ok(PublishTopic::MethodResponse {
                status: -1,
                rid: "7"
            })
        );
    }

    #[test]
    fn unknown_publish_topics_are_refused_with_a_reason() {
        for topic in [
            "",
            "a/b",
            "devices/dev1",
            "devices/dev1/messages/eventsx",
            "devices/dev1/messages/devicebound/x",
            "devices/dev1/modules/mod1",
            "$iothub/twin/GET/",
            "$iothub/twin/GET/?$rid=",
            "$iothub/twin/GET/?rid=1",
            "$iothub/twin/PATCH/properties/desired/?$rid=1",
            "$iothub/methods/res/ok/?$rid=1",
            "$iothub/methods/res/200",
            "$iothub/methods/POST/m/?$rid=1",
        ] {
            let error = PublishTopic::parse(topic, &device()).unwrap_err();
            assert!(
                matches!(error, Error::InvalidPublishTopic { .. }),
                "{topic:?}: {error}"
            );
        }
    }

    #[test]
    fn the_sdk_subscriptions_parse() {
        for (filter, client, expected) in [
            (
                "devices/dev1/messages/devicebound/#",
                device(),
                Subscription::CloudToDevice,
            ),
            (
                "devices/dev1/modules/mod1/inputs/#",
                module(),
                Subscription::ModuleInputs,
            ),
            (
                "$iothub/methods/POST/#",
                device(),
                Subscription::MethodRequests,
            ),
            ("$iothub/twin/res/#", module(), Subscription::TwinResponses),
            (
                "$iothub/twin/PATCH/properties/desired/#",
                device(),
                Subscription::DesiredPatches,
            ),
        ] {
            assert_eq!(
                Subscription::parse(filter, &client),
                Ok(expected),
                "{filter}"
            );
        }
    }

    #[test]
    fn other_subscriptions_are_refused() {
        for (filter, client) in [
            ("#", device()),
            ("devices/#", device()),
            ("devices/dev1/messages/devicebound/", device()),
            ("devices/dev1/messages/devicebound/#", module()),
            ("devices/dev1/modules/mod1/inputs/in1", module()),
            ("devices/dev1/modules/mod1/outputs/#", module()),
            ("$iothub/methods/POST/", device()),
            ("$iothub/twin/#", device()),
        ] {
            assert!(
                matches!(
                    Subscription::parse(filter, &client),
                    Err(Error::InvalidSubscription { .. })
                ),
                "{filter}"
            );
        }
        // Wildcards are literal here ('+' and '#' are legal in ids): they name another device.
        for filter in [
            "devices/dev2/messages/devicebound/#",
            "devices/+/messages/devicebound/#",
        ] {
            assert_eq!(
                Subscription::parse(filter, &device()),
                Err(Error::TopicIdentityMismatch)
            );
        }
        assert_eq!(
            Subscription::parse("devices/dev1/modules/mod1/inputs/#", &device()),
            Err(Error::TopicIdentityMismatch)
        );
    }

    /// A C2D topic the device SDK was observed to receive: it split the topic on '/' and
    /// found `ack='full'` and custom properties color, flag and empty.
    #[test]
    fn the_c2d_topic_the_sdk_parses_is_what_the_builder_writes() {
        let mut topic = String::new();
        write_c2d_topic(&mut topic, DEV1)
            .system(SystemProperty::MessageId, "m-1")
            .system(SystemProperty::To, "/devices/dev1/messages/deviceBound")
            .application("iothub-ack", "full")
            .application("color", "blue")
            .application("flag", "")
            .application("empty", "");
        assert_eq!(
            topic,
            "devices/dev1/messages/devicebound/%24.mid=m-1&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&iothub-ack=full&color=blue&flag=&empty="
        );
        // The SDK takes segment 4 of a split on '/' as the property bag.
        assert_eq!(topic.split('/').count(), 5);
        let DeliveryTopic::CloudToDevice {
            device_id,
            properties,
        } = DeliveryTopic::parse(&topic).unwrap()
        else {
            panic!("C2D expected");
        };
        assert_eq!(device_id, DEV1);
        let properties = MessageProperties::parse(properties).unwrap();
        assert_eq!(
            properties.get(SystemProperty::To),
            Some("/devices/dev1/messages/deviceBound")
        );
        let application: Vec<_> = properties.application().collect();
        assert_eq!(
            application,
            [
                ("iothub-ack".into(), "full".into()),
                ("color".into(), "blue".into()),
                ("flag".into(), "".into()),
                ("empty".into(), "".into())
            ]
        );
        // The observed topic, as the SDK received it, parses the same way.
        let observed = "devices/dev1/messages/devicebound/%24.mid=m-1&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&iothub-ack=full&color=blue&flag&empty=";
        let DeliveryTopic::CloudToDevice { properties, .. } =
            DeliveryTopic::parse(observed).unwrap()
        else {
            panic!("C2D expected");
        };
        let properties = MessageProperties::parse(properties).unwrap();
        assert_eq!(properties.application().count(), 4);
    }

    #[test]
    fn module_input_topic_encodes_the_input_name() {
        let mut topic = String::new();
        write_module_input_topic(&mut topic, DEV1, "mod1", "in/1").application("k", "v");
        assert_eq!(topic, "devices/dev1/modules/mod1/inputs/in%2F1/k=v");
        assert_eq!(
            DeliveryTopic::parse(&topic),
            Ok(DeliveryTopic::ModuleInput {
                device_id: DEV1,
                module_id: "mod1",
                input: "in/1".into(),
                properties: "k=v",
            })
        );
    }

    #[test]
    fn method_twin_and_desired_topics_match_the_sdk_shapes() {
        let mut topic = String::new();
        write_method_request_topic(&mut topic, "reboot now", "1f");
        assert_eq!(topic, "$iothub/methods/POST/reboot%20now/?$rid=1f");
        assert_eq!(
            DeliveryTopic::parse(&topic),
            Ok(DeliveryTopic::MethodRequest {
                method: "reboot now".into(),
                rid: "1f"
            })
        );
        write_twin_response_topic(&mut topic, 204, "abc", Some(7));
        assert_eq!(topic, "$iothub/twin/res/204/?$rid=abc&$version=7");
        assert_eq!(
            DeliveryTopic::parse(&topic),
            Ok(DeliveryTopic::TwinResponse {
                status: 204,
                rid: "abc",
                version: Some(7)
            })
        );
        write_twin_response_topic(&mut topic, 200, "abc", None);
        assert_eq!(topic, "$iothub/twin/res/200/?$rid=abc");
        write_desired_patch_topic(&mut topic, 42);
        assert_eq!(topic, "$iothub/twin/PATCH/properties/desired/?$version=42");
        assert_eq!(
            DeliveryTopic::parse(&topic),
            Ok(DeliveryTopic::DesiredPatch { version: 42 })
        );
    }

    #[test]
    fn a_written_telemetry_topic_parses_back_for_its_identity() {
        let mut topic = String::new();
        for client in [device(), module()] {
            write_telemetry_topic(&mut topic, &client)
                .system(SystemProperty::ContentType, "application/json")
                .application("a b", "x/y&z");
            let PublishTopic::Telemetry { properties } =
                PublishTopic::parse(&topic, &client).unwrap()
            else {
                panic!("telemetry expected");
            };
            assert_eq!(properties, "%24.ct=application%2Fjson&a%20b=x%2Fy%26z");
        }
    }
}
