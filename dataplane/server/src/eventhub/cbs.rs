//! Claims-based security for the Event Hubs-compatible endpoint: deciding a `$cbs` put-token
//! and a SASL PLAIN login against the shard's copy of the hub's shared access policies.
//!
//! A put-token names an *audience* and carries a shared access signature:
//!
//! | client | audience | key bytes the client signs with |
//! |---|---|---|
//! | Event Hubs SDKs, management | `sb://{host}/{hub}` | the key text's UTF-8 bytes |
//! | Event Hubs SDKs, receivers | `sb://{host}/{hub}/consumergroups/{group}` | the key text's UTF-8 bytes |
//! | IoT Hub service SDK (uamqp) | `https://{host}` | the base64-decoded key |
//!
//! `{host}` is any name the server answers to, with or without a port (the emulator mode of
//! the Event Hubs SDKs keeps the port), compared case-insensitively. Either form of either
//! policy key is accepted. The policy must grant ServiceConnect. A refusal is a CBS status
//! (401, 403, 404) with a description the client shows; it is never a rejected disposition.

use dataplane_amqp::management::PutToken;
use dataplane_wire::sas::{SasError, SasToken, decode_key};
use schemas::plane::PolicyGrant;

use crate::sync::IdentityCache;

/// What a token (or a PLAIN login) lets the connection read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole hub: `$management` and every consumer group.
    Hub,
    /// One consumer group, lower-cased.
    ConsumerGroup(String),
}

/// An accepted put-token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// What it covers.
    pub scope: Scope,
    /// When it stops counting, seconds since the Unix epoch.
    pub expiry_secs: u64,
}

/// A refused put-token: the CBS status code and the description the client shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 401, 403 or 404.
    pub status: i32,
    /// What went wrong, for the person reading the client's error.
    pub description: String,
}

fn refuse(status: i32, description: impl Into<String>) -> Refusal {
    Refusal {
        status,
        description: description.into(),
    }
}

/// The SAS token type; `jwt` (Azure AD) is the other one clients send.
const SAS_TOKEN_TYPE: &str = PutToken::SAS_TOKEN_TYPE;

/// Decides a put-token at `now_secs`.
pub fn authorize(
    put: &PutToken,
    identities: &IdentityCache,
    accepted_hosts: &[String],
    now_secs: u64,
) -> Result<Grant, Refusal> {
    if put.token_type != SAS_TOKEN_TYPE {
        return Err(refuse(
            401,
            format!(
                "token type '{}' is not supported: send a shared access signature ({SAS_TOKEN_TYPE})",
                put.token_type
            ),
        ));
    }
    let scope = audience_scope(&put.audience, identities.hub_name(), accepted_hosts)?;
    let token = SasToken::parse(&put.token)
        .map_err(|error| refuse(401, format!("InvalidToken: {error}")))?;
    if !covers(&token.resource, &put.audience) {
        return Err(refuse(
            401,
            format!(
                "InvalidAudience: the token is for '{}', not for '{}'",
                token.resource, put.audience
            ),
        ));
    }
    let name = token.key_name.as_deref().ok_or_else(|| {
        refuse(
            401,
            "the token names no shared access policy (skn); sign it with a policy that grants ServiceConnect",
        )
    })?;
    let policy = find_policy(identities, name)
        .ok_or_else(|| refuse(401, format!("no shared access policy named '{name}'")))?;
    if !policy.service_connect {
        return Err(refuse(
            403,
            format!("policy '{name}' does not grant ServiceConnect, which reading events needs"),
        ));
    }
    verify(&token, policy, now_secs).map_err(|error| match error {
        SasError::Expired { .. } => refuse(401, format!("ExpiredToken: {error}")),
        _ => refuse(
            401,
            format!("InvalidSignature: the token is not signed with a key of policy '{name}'"),
        ),
    })?;
    Ok(Grant {
        scope,
        expiry_secs: token.expiry_secs,
    })
}

/// Decides a SASL PLAIN login: the user name is a policy name, the password one of its keys.
pub fn authorize_plain(identities: &IdentityCache, username: &str, password: &str) -> bool {
    let Some(policy) = find_policy(identities, username) else {
        return false;
    };
    let matches =
        |key: &str| subtle::ConstantTimeEq::ct_eq(key.as_bytes(), password.as_bytes()).into();
    let primary: bool = matches(&policy.primary_key);
    let secondary: bool = matches(&policy.secondary_key);
    policy.service_connect && (primary | secondary)
}

fn find_policy<'c>(identities: &'c IdentityCache, name: &str) -> Option<&'c PolicyGrant> {
    identities.policy(name).or_else(|| {
        identities
            .policies()
            .iter()
            .find(|policy| policy.name.eq_ignore_ascii_case(name))
    })
}

/// Accepts the key text's bytes (Event Hubs SDKs) and the decoded key (IoT Hub SDKs), primary
/// or secondary.
fn verify(token: &SasToken, policy: &PolicyGrant, now_secs: u64) -> Result<(), SasError> {
    let mut outcome = Err(SasError::SignatureMismatch);
    for key in [&policy.primary_key, &policy.secondary_key] {
        let decoded = decode_key(key).unwrap_or_default();
        // An empty key (none, or one that does not decode) never verifies: `SasToken::verify`.
        for bytes in [key.as_bytes(), decoded.as_slice()] {
            match token.verify(bytes, now_secs) {
                Ok(()) => return Ok(()),
                Err(SasError::SignatureMismatch) => {}
                Err(other) => outcome = Err(other),
            }
        }
    }
    outcome
}

/// Splits `sb://host[:port]/path` (any scheme, or none) into the host without its port and
/// the path without surrounding slashes.
fn split_audience(audience: &str) -> (&str, &str) {
    let rest = audience
        .find("://")
        .map_or(audience, |at| &audience[at + 3..]);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    (host, path.trim_matches('/'))
}

fn audience_scope(
    audience: &str,
    hub_name: &str,
    accepted_hosts: &[String],
) -> Result<Scope, Refusal> {
    let (host, path) = split_audience(audience);
    if !dataplane_wire::iothub::is_accepted_host(host, accepted_hosts) {
        return Err(refuse(
            401,
            format!(
                "InvalidAudience: '{audience}' names host '{host}', which is not one of this server's names ({})",
                accepted_hosts.join(", ")
            ),
        ));
    }
    let not_found = || {
        refuse(
            404,
            format!(
                "The messaging entity '{audience}' could not be found: this server serves event hub '{hub_name}'"
            ),
        )
    };
    let segments: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    match segments[..] {
        [] => Ok(Scope::Hub),
        [hub] if hub.eq_ignore_ascii_case(hub_name) => Ok(Scope::Hub),
        [hub, groups, group]
            if hub.eq_ignore_ascii_case(hub_name)
                && groups.eq_ignore_ascii_case("consumergroups")
                && !group.is_empty() =>
        {
            Ok(Scope::ConsumerGroup(group.to_ascii_lowercase()))
        }
        _ => Err(not_found()),
    }
}

/// Whether a token for `resource` speaks for `audience`: the same, or a parent path of it.
/// Schemes are ignored (the IoT Hub service SDK signs the bare host for `https://{host}`).
fn covers(resource: &str, audience: &str) -> bool {
    let strip = |text: &str| -> String {
        let rest = text.find("://").map_or(text, |at| &text[at + 3..]);
        rest.trim_end_matches('/').to_ascii_lowercase()
    };
    let resource = strip(resource);
    let audience = strip(audience);
    audience == resource
        || audience
            .strip_prefix(&resource)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::plane::{ControlMessage, HubSnapshot};
    use std::sync::Arc;

    const KEY: &str = "c2VydmljZS1rZXktZm9yLXRlc3RzLTMyLWJ5dGVzISE=";
    const NOW: u64 = 1_700_000_000;

    fn identities(service_connect: bool) -> IdentityCache {
        let mut cache = IdentityCache::default();
        cache.apply(&ControlMessage::Snapshot(Arc::new(HubSnapshot {
            version: 1,
            hub_name: "shoal".into(),
            partition_count: 4,
            identities: vec![],
            policies: vec![PolicyGrant {
                name: "service".into(),
                primary_key: KEY.into(),
                secondary_key: "b3RoZXI=".into(),
                device_connect: false,
                service_connect,
            }],
            consumer_groups: vec!["$Default".into()],
        })));
        cache
    }

    fn hosts() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into()]
    }

    /// A token as azure-eventhub builds it: the key text's bytes sign quote_plus(audience).
    fn eventhub_token(audience: &str, key: &str, expiry: u64) -> String {
        dataplane_wire::sas::generate(audience, key.as_bytes(), expiry, Some("service"))
    }

    fn put(audience: &str, token: String) -> PutToken {
        PutToken {
            audience: audience.into(),
            token_type: SAS_TOKEN_TYPE.into(),
            token,
            expiration_ms: None,
        }
    }

    #[test]
    fn eventhub_tokens_for_the_hub_and_a_consumer_group_are_granted() {
        let cache = identities(true);
        let audience = "sb://localhost/shoal";
        let grant = authorize(
            &put(audience, eventhub_token(audience, KEY, NOW + 60)),
            &cache,
            &hosts(),
            NOW,
        )
        .unwrap();
        assert_eq!(grant.scope, Scope::Hub);
        assert_eq!(grant.expiry_secs, NOW + 60);

        let audience = "sb://LOCALHOST:5672/shoal/consumergroups/$Default";
        let grant = authorize(
            &put(audience, eventhub_token(audience, KEY, NOW + 60)),
            &cache,
            &hosts(),
            NOW,
        )
        .unwrap();
        assert_eq!(grant.scope, Scope::ConsumerGroup("$default".into()));
    }

    #[test]
    fn a_service_sdk_token_signed_with_the_decoded_key_is_granted() {
        let cache = identities(true);
        let key = decode_key(KEY).unwrap();
        let token =
            dataplane_wire::sas::generate("localhost:5671", &key, NOW + 60, Some("service"));
        let grant =
            authorize(&put("https://localhost:5671", token), &cache, &hosts(), NOW).unwrap();
        assert_eq!(grant.scope, Scope::Hub);
    }

    #[test]
    fn wrong_key_expiry_host_hub_and_permission_are_refused_with_their_status() {
        let cache = identities(true);
        let audience = "sb://localhost/shoal";
        let wrong = authorize(
            &put(audience, eventhub_token(audience, "d3Jvbmc=", NOW + 60)),
            &cache,
            &hosts(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(wrong.status, 401);
        assert!(wrong.description.contains("InvalidSignature"), "{wrong:?}");

        let expired = authorize(
            &put(audience, eventhub_token(audience, KEY, NOW - 1)),
            &cache,
            &hosts(),
            NOW,
        )
        .unwrap_err();
        assert!(expired.description.contains("ExpiredToken"), "{expired:?}");

        let elsewhere = "sb://example.net/shoal";
        let host = authorize(
            &put(elsewhere, eventhub_token(elsewhere, KEY, NOW + 60)),
            &cache,
            &hosts(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(host.status, 401);

        let other_hub = "sb://localhost/other";
        let hub = authorize(
            &put(other_hub, eventhub_token(other_hub, KEY, NOW + 60)),
            &cache,
            &hosts(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(hub.status, 404);

        let weak = identities(false);
        let permission = authorize(
            &put(audience, eventhub_token(audience, KEY, NOW + 60)),
            &weak,
            &hosts(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(permission.status, 403);
    }

    #[test]
    fn a_token_for_one_consumer_group_does_not_speak_for_another_audience() {
        let cache = identities(true);
        let token = eventhub_token("sb://localhost/shoal/consumergroups/a", KEY, NOW + 60);
        let refused = authorize(
            &put("sb://localhost/shoal/consumergroups/b", token),
            &cache,
            &hosts(),
            NOW,
        )
        .unwrap_err();
        assert!(
            refused.description.contains("InvalidAudience"),
            "{refused:?}"
        );
        // A hub token covers its consumer groups.
        let token = eventhub_token("sb://localhost/shoal", KEY, NOW + 60);
        let grant = authorize(
            &put("sb://localhost/shoal/consumergroups/b", token),
            &cache,
            &hosts(),
            NOW,
        )
        .unwrap();
        assert_eq!(grant.scope, Scope::ConsumerGroup("b".into()));
    }

    #[test]
    fn plain_login_needs_a_key_of_a_service_policy() {
        assert!(authorize_plain(&identities(true), "service", KEY));
        assert!(authorize_plain(&identities(true), "service", "b3RoZXI="));
        assert!(!authorize_plain(&identities(true), "service", "nope"));
        assert!(!authorize_plain(&identities(true), "absent", KEY));
        assert!(!authorize_plain(&identities(false), "service", KEY));
    }
}
