//! SAS authorization of REST requests (checklist S2, S3).
//!
//! Registry and service calls must carry a hub-level token signed with a shared access
//! policy's key (`skn` present, resource = the host name, optionally with a port). The policy
//! must grant the operation's permission.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use dataplane_wire::sas::{SasError, SasToken, decode_key};

use super::error::ApiError;
use crate::registry::hub::{HubRecord, Permission};

/// Checks the request's `Authorization` header; `accepted_hosts` are the names clients may
/// address the hub by (the certificate's names).
pub fn authorize(
    hub: &HubRecord,
    accepted_hosts: &[String],
    headers: &HeaderMap,
    permission: Permission,
    now_secs: u64,
) -> Result<(), ApiError> {
    let header = headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized(
            "The request has no Authorization header; send 'SharedAccessSignature sr=...&sig=...&se=...&skn=...' built from a shared access policy's key.",
        )
    })?;
    let header = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("The Authorization header is not ASCII."))?;
    let token = SasToken::parse(header).map_err(|error| {
        ApiError::unauthorized(format!(
            "The Authorization header is not a valid shared access signature: {error}."
        ))
    })?;
    let key_name = token.key_name.as_deref().ok_or_else(|| {
        ApiError::unauthorized(
            "The token has no 'skn': registry and service calls need a token signed with a shared access policy's key, not a device key.",
        )
    })?;
    check_hub_resource(&token.resource, accepted_hosts)?;
    let policy = hub.policy(key_name).ok_or_else(|| {
        ApiError::unauthorized(format!(
            "The shared access policy '{key_name}' does not exist on hub '{}'.",
            hub.name
        ))
    })?;
    let primary = decode_key(&policy.primary_key).map_err(|error| ApiError::server(&error))?;
    let secondary = decode_key(&policy.secondary_key).map_err(|error| ApiError::server(&error))?;
    token
        .verify_either(&primary, &secondary, now_secs)
        .map_err(|error| match error {
            SasError::Expired { expiry_secs, .. } => ApiError::unauthorized(format!(
                "The token expired at {expiry_secs} (Unix seconds); issue a new one."
            )),
            _ => ApiError::unauthorized(format!(
                "The token's signature does not match the keys of policy '{key_name}'."
            )),
        })?;
    if !policy.rights.allow(permission) {
        return Err(ApiError::unauthorized(format!(
            "Policy '{key_name}' grants {}; this operation needs {permission:?}.",
            if policy.rights.describe().is_empty() {
                "nothing".to_owned()
            } else {
                policy.rights.describe()
            }
        )));
    }
    Ok(())
}

/// The resource of a hub-level token is the host name, optionally with `:port`.
fn check_hub_resource(resource: &str, accepted_hosts: &[String]) -> Result<(), ApiError> {
    let host = resource.split('/').next().unwrap_or_default();
    if resource.len() != host.len() && !resource[host.len()..].trim_matches('/').is_empty() {
        return Err(ApiError::unauthorized(format!(
            "The token's resource '{resource}' is scoped below the hub; registry and service calls need a hub-level token (sr = the host name)."
        )));
    }
    if dataplane_wire::iothub::is_accepted_host(host, accepted_hosts) {
        Ok(())
    } else {
        Err(ApiError::unauthorized(format!(
            "The token's resource '{resource}' names a host this hub does not answer to (it answers to {}).",
            accepted_hosts.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::hub::default_policies;
    use axum::http::HeaderValue;

    const NOW: u64 = 1_700_000_000;

    fn hub() -> HubRecord {
        let mut counter = 0u8;
        HubRecord {
            name: "hub".into(),
            partition_count: 4,
            created_ms: 0,
            policies: default_policies(|| {
                counter += 1;
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [counter; 32])
            }),
            consumer_groups: crate::registry::hub::default_consumer_groups(),
        }
    }

    fn headers_for(hub: &HubRecord, policy: &str, resource: &str, expiry: u64) -> HeaderMap {
        let key = decode_key(&hub.policy(policy).unwrap().primary_key).unwrap();
        let token = dataplane_wire::sas::generate(resource, &key, expiry, Some(policy));
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&token).unwrap());
        headers
    }

    fn hosts() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into()]
    }

    #[test]
    fn owner_token_with_port_is_accepted_for_writes() {
        let hub = hub();
        let headers = headers_for(&hub, "iothubowner", "localhost:8443", NOW + 60);
        authorize(&hub, &hosts(), &headers, Permission::RegistryWrite, NOW).unwrap();
    }

    #[test]
    fn registry_read_cannot_write_and_service_cannot_read_the_registry() {
        let hub = hub();
        let headers = headers_for(&hub, "registryRead", "localhost", NOW + 60);
        authorize(&hub, &hosts(), &headers, Permission::RegistryRead, NOW).unwrap();
        let error =
            authorize(&hub, &hosts(), &headers, Permission::RegistryWrite, NOW).unwrap_err();
        assert!(error.message.contains("RegistryWrite"), "{}", error.message);
        let headers = headers_for(&hub, "service", "localhost", NOW + 60);
        assert!(authorize(&hub, &hosts(), &headers, Permission::RegistryRead, NOW).is_err());
    }

    #[test]
    fn expired_unknown_policy_foreign_host_and_device_scope_are_refused() {
        let hub = hub();
        let expired = headers_for(&hub, "iothubowner", "localhost", NOW - 1);
        let error = authorize(&hub, &hosts(), &expired, Permission::RegistryRead, NOW).unwrap_err();
        assert!(error.message.contains("expired"));
        let foreign = headers_for(&hub, "iothubowner", "other.example", NOW + 60);
        assert!(authorize(&hub, &hosts(), &foreign, Permission::RegistryRead, NOW).is_err());
        let scoped = headers_for(&hub, "iothubowner", "localhost/devices/d1", NOW + 60);
        assert!(authorize(&hub, &hosts(), &scoped, Permission::RegistryRead, NOW).is_err());
        let mut forged = headers_for(&hub, "iothubowner", "localhost", NOW + 60);
        let text = forged[AUTHORIZATION]
            .to_str()
            .unwrap()
            .replace("skn=iothubowner", "skn=registryRead");
        forged.insert(AUTHORIZATION, HeaderValue::from_str(&text).unwrap());
        assert!(authorize(&hub, &hosts(), &forged, Permission::RegistryRead, NOW).is_err());
        assert!(
            authorize(
                &hub,
                &hosts(),
                &HeaderMap::new(),
                Permission::RegistryRead,
                NOW
            )
            .is_err()
        );
    }
}
