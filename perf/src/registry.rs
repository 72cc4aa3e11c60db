//! Device identities: registering them with Shoal over the service REST API, and the MQTT
//! credentials and topics each simulated device uses.
//!
//! Keys are derived from the device id, so a later run with `register = "existing"` or
//! `"upsert"` reaches the same devices without storing anything.

use std::time::Instant;

use anyhow::{Context as _, anyhow};
use base64::Engine as _;
use controlplane::client::{ServiceClient, ServiceConnectionString, path_segment};
use dataplane_wire::sas;
use serde_json::{Value, json};

use crate::driver::Identity;
use crate::scenario::Register;

/// Devices per bulk call (the REST API's limit).
pub const BULK_COUNT_MAX: usize = 100;
/// The api-version the device SDK puts in the MQTT user name.
pub const DEVICE_API_VERSION: &str = "2019-10-01";

/// The device id of device `n`.
pub fn device_id(prefix: &str, n: u32) -> String {
    format!("{prefix}{n}")
}

/// The generator's symmetric key for a device (base64 of 32 bytes derived from its id).
pub fn device_key(device_id: &str) -> String {
    // FNV-1a over the id seeds a xorshift stream: deterministic, not secret, and distinct
    // per device, which is all a benchmark key needs.
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in device_id.bytes() {
        state ^= u64::from(byte);
        state = state.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut bytes = [0_u8; 32];
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The IoT Hub MQTT identity of a device: client id = device id, user name
/// `{host}/{id}/?api-version=2019-10-01`, password a SAS token signed with the device key,
/// topic `devices/{id}/messages/events/{properties}`.
pub fn iothub_identity(
    host: &str,
    device_id: &str,
    key_base64: &str,
    expiry_secs: u64,
    properties: &str,
) -> anyhow::Result<Identity> {
    let key = sas::decode_key(key_base64)
        .map_err(|_| anyhow!("device {device_id}: key is not base64"))?;
    let token = sas::generate(
        &format!("{host}/devices/{device_id}"),
        &key,
        expiry_secs,
        None,
    );
    Ok(Identity {
        client_id: device_id.to_owned(),
        username: Some(format!(
            "{host}/{device_id}/?api-version={DEVICE_API_VERSION}"
        )),
        password: Some(token),
        topic: format!("devices/{device_id}/messages/events/{properties}").into_bytes(),
    })
}

/// The plain MQTT identity of peer device `n`: `perf-{n}` on `perf/{n}`, no credentials.
pub fn peer_identity(n: u32) -> Identity {
    Identity {
        client_id: format!("perf-{n}"),
        username: None,
        password: None,
        topic: format!("perf/{n}").into_bytes(),
    }
}

/// How registration went.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Registration {
    /// Devices handled.
    pub devices: u32,
    /// REST calls made.
    pub calls: u32,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Registers (or looks up) `count` devices; returns each device's key in order.
pub fn register(
    connection_string: &str,
    ca_path: Option<&std::path::Path>,
    prefix: &str,
    count: u32,
    mode: Register,
) -> anyhow::Result<(Vec<String>, Registration)> {
    let connection = ServiceConnectionString::parse(connection_string)
        .map_err(|e| anyhow!("service connection string: {e}"))?;
    let client = ServiceClient::new(connection, ca_path).map_err(|e| anyhow!("{e}"))?;
    let started = Instant::now();
    let ids: Vec<String> = (0..count).map(|n| device_id(prefix, n)).collect();
    let mut keys = Vec::with_capacity(ids.len());
    let mut calls = 0;
    match mode {
        Register::Create | Register::Upsert => {
            let import_mode = if mode == Register::Create {
                "create"
            } else {
                "update"
            };
            for chunk in ids.chunks(BULK_COUNT_MAX) {
                let body: Vec<Value> = chunk
                    .iter()
                    .map(|id| {
                        let key = device_key(id);
                        json!({
                            "id": id,
                            "importMode": import_mode,
                            "status": "enabled",
                            "authentication": {
                                "type": "sas",
                                "symmetricKey": { "primaryKey": key, "secondaryKey": key },
                            },
                        })
                    })
                    .collect();
                calls += 1;
                client
                    .call("POST", "/devices", Some(&Value::Array(body)), None)
                    .map_err(|e| {
                        let hint = if mode == Register::Create && e.to_string().contains("Exist") {
                            " (they exist already: use --register upsert or existing)"
                        } else {
                            ""
                        };
                        anyhow!("bulk registration of {}..: {e}{hint}", chunk[0])
                    })?;
                keys.extend(chunk.iter().map(|id| device_key(id)));
            }
        }
        Register::Existing => {
            for id in &ids {
                calls += 1;
                let device = client
                    .call("GET", &format!("/devices/{}", path_segment(id)), None, None)
                    .map_err(|e| anyhow!("reading device {id}: {e}"))?;
                let key = device["authentication"]["symmetricKey"]["primaryKey"]
                    .as_str()
                    .with_context(|| format!("device {id} has no symmetric key"))?;
                keys.push(key.to_owned());
            }
        }
    }
    Ok((
        keys,
        Registration {
            devices: count,
            calls,
            seconds: started.elapsed().as_secs_f64(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(device_key("perf-1"), device_key("perf-1"));
        assert_ne!(device_key("perf-1"), device_key("perf-2"));
        assert_eq!(
            sas::decode_key(&device_key("perf-1"))
                .expect("base64")
                .len(),
            32
        );
    }

    #[test]
    fn iothub_identity_matches_the_device_sdk_shape() {
        // A worked SAS example: 32 zero bytes, dev1, localhost.
        let key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let id = iothub_identity("localhost", "dev1", key, 1_700_000_000, "").expect("valid");
        assert_eq!(id.client_id, "dev1");
        assert_eq!(
            id.username.as_deref(),
            Some("localhost/dev1/?api-version=2019-10-01")
        );
        assert_eq!(
            id.password.as_deref(),
            Some(
                "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=FZOlNa5AJB6q3ivl3f%2FLUonFxr5QRUBtgfHSRBWHMbo%3D&se=1700000000"
            )
        );
        assert_eq!(id.topic, b"devices/dev1/messages/events/");
        let with_props =
            iothub_identity("localhost", "dev1", key, 1, "%24.ct=x&k=v").expect("valid");
        assert_eq!(
            with_props.topic,
            b"devices/dev1/messages/events/%24.ct=x&k=v"
        );
    }

    #[test]
    fn peer_identity_is_plain() {
        let id = peer_identity(7);
        assert_eq!(id.client_id, "perf-7");
        assert_eq!(id.topic, b"perf/7");
        assert!(id.username.is_none() && id.password.is_none());
    }
}
