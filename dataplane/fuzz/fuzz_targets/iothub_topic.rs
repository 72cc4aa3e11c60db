//! IoT Hub's topic grammar, property bags, user names and SAS scopes on arbitrary input.
//!
//! Invariants, beyond not panicking on any text:
//! - every topic the server's builders write parses back, on the device side, to the values
//!   it was written from (ids, input and method names, request ids, versions, properties);
//! - a telemetry topic written for an identity parses for that identity, and for no other;
//! - a parsed property bag iterates exactly the application properties it counted, and its
//!   size is body plus decoded system values plus decoded application names and values.

#![no_main]

use dataplane_wire::iothub::{
    ClientId, DeliveryTopic, MessageProperties, PublishTopic, Subscription, SystemProperty,
    Username, authorize, parse_expiry_ms, write_c2d_topic, write_desired_patch_topic,
    write_method_request_topic, write_module_input_topic, write_telemetry_topic,
    write_twin_response_topic,
};
use dataplane_wire::sas::SasToken;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Parsed as every kind of text the grammar reads.
    text: &'a str,
    client_id: &'a str,
    input_name: String,
    method: String,
    rid_seed: u64,
    status: u16,
    version: u64,
    system: Vec<(u8, String)>,
    application: Vec<(String, String)>,
}

fuzz_target!(|input: Input<'_>| {
    parse_anything(&input);
    let Ok(client) = ClientId::parse(input.client_id) else {
        return;
    };
    check_telemetry_round_trip(&input, &client);
    check_delivery_round_trips(&input, &client);
});

fn parse_anything(input: &Input<'_>) {
    let text = input.text;
    let client = ClientId::parse("dev1").expect("a valid id");
    let _ = PublishTopic::parse(text, &client);
    let _ = Subscription::parse(text, &client);
    let _ = DeliveryTopic::parse(text);
    let _ = Username::parse(text, input.client_id);
    let _ = parse_expiry_ms(text);
    if let Ok(token) = SasToken::parse(text) {
        let _ = authorize(&token, &client, &["localhost"]);
    }
    if let Ok(properties) = MessageProperties::parse(text) {
        assert_eq!(
            properties.application().count(),
            properties.application_count()
        );
        let system_bytes: usize = properties.system_properties().map(|(_, v)| v.len()).sum();
        let application_bytes: usize = properties
            .application()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        // Lossy decoding may widen a bad byte into U+FFFD, so the decoded strings are at
        // least as long as what the size counts only when everything was valid UTF-8.
        if !properties.raw().contains('%') {
            assert_eq!(
                properties.message_bytes(7),
                7 + system_bytes + application_bytes
            );
        }
    }
}

/// The properties to write: at most one value per system property, application names that
/// are neither empty nor system keys.
fn properties<'i>(
    input: &'i Input<'_>,
) -> (Vec<(SystemProperty, &'i str)>, Vec<(&'i str, &'i str)>) {
    let mut system: Vec<(SystemProperty, &str)> = Vec::new();
    for (index, value) in &input.system {
        let property = SystemProperty::ALL[usize::from(*index) % SystemProperty::COUNT];
        if system.iter().all(|(seen, _)| *seen != property) {
            system.push((property, value));
        }
    }
    let application = input
        .application
        .iter()
        .filter(|(name, _)| !name.is_empty() && SystemProperty::from_key(name.as_bytes()).is_none())
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .take(64)
        .collect();
    (system, application)
}

fn check_telemetry_round_trip(input: &Input<'_>, client: &ClientId<'_>) {
    let (system, application) = properties(input);
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
    let other =
        ClientId::parse(if client.device_id() == "x" { "y" } else { "x" }).expect("a valid id");
    assert!(PublishTopic::parse(&topic, &other).is_err());
    let Ok(parsed) = MessageProperties::parse(properties) else {
        // Long names or values are refused by the bounds; that is not a round-trip failure.
        return;
    };
    for (property, value) in &system {
        assert_eq!(parsed.get(*property), Some(*value));
    }
    assert_eq!(parsed.system_properties().count(), system.len());
    let parsed_application: Vec<_> = parsed.application().collect();
    assert_eq!(parsed_application.len(), application.len());
    for ((name, value), (parsed_name, parsed_value)) in application.iter().zip(&parsed_application)
    {
        assert_eq!(
            (*name, *value),
            (parsed_name.as_ref(), parsed_value.as_ref())
        );
    }
}

fn check_delivery_round_trips(input: &Input<'_>, client: &ClientId<'_>) {
    let device_id = client.device_id();
    let rid = format!("{:x}", input.rid_seed);
    let mut topic = String::new();

    write_c2d_topic(&mut topic, device_id).application("k", &input.method);
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
        assert_eq!(
            (name.as_ref(), value.as_ref()),
            ("k", input.method.as_str())
        );
    }

    if let Some(module_id) = client.module_id() {
        write_module_input_topic(&mut topic, device_id, module_id, &input.input_name);
        assert_eq!(
            DeliveryTopic::parse(&topic),
            Ok(DeliveryTopic::ModuleInput {
                device_id,
                module_id,
                input: input.input_name.as_str().into(),
                properties: "",
            })
        );
    }

    write_method_request_topic(&mut topic, &input.method, &rid);
    assert_eq!(
        DeliveryTopic::parse(&topic),
        Ok(DeliveryTopic::MethodRequest {
            method: input.method.as_str().into(),
            rid: &rid,
        })
    );

    for version in [None, Some(input.version)] {
        write_twin_response_topic(&mut topic, input.status, &rid, version);
        assert_eq!(
            DeliveryTopic::parse(&topic),
            Ok(DeliveryTopic::TwinResponse {
                status: input.status,
                rid: &rid,
                version,
            })
        );
    }

    write_desired_patch_topic(&mut topic, input.version);
    assert_eq!(
        DeliveryTopic::parse(&topic),
        Ok(DeliveryTopic::DesiredPatch {
            version: input.version
        })
    );
}
