//! Authenticating a device's CONNECT against the shard's identity cache (checklist S2-S5).
//!
//! The password is a SAS token. Its resource names the identity (`{host}/devices/{id}`, or
//! `.../modules/{mid}`) and it is signed with that identity's key, or its resource is the hub
//! (or a prefix above the identity) and it is signed with a policy granting DeviceConnect.
//! Every refusal carries the CONNACK code the device sees and a reason for the log.

use dataplane_wire::iothub::{ClientId, KeyScope, Username, authorize};
use dataplane_wire::mqtt::{Connect, ConnectReturnCode};
use dataplane_wire::sas::{SasError, SasToken, decode_key};
use schemas::plane::{Credentials, IdentityKey};

use crate::sync::IdentityCache;

/// How the identity proved itself, as stamped on its messages
/// (`iothub-connection-auth-method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// The device's own key.
    DeviceSas,
    /// The module's own key.
    ModuleSas,
    /// A shared access policy with DeviceConnect.
    HubSas,
}

impl AuthMethod {
    /// The JSON IoT Hub stamps on messages.
    pub const fn stamp(self) -> &'static str {
        match self {
            Self::DeviceSas => {
                r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#
            }
            Self::ModuleSas => {
                r#"{"scope":"module","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#
            }
            Self::HubSas => {
                r#"{"scope":"hub","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#
            }
        }
    }
}

/// An authenticated connection's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Device and optional module.
    pub key: IdentityKey,
    /// `iothub-connection-auth-generation-id`.
    pub generation_id: String,
    /// How it authenticated.
    pub method: AuthMethod,
    /// When the token expires (seconds since the Unix epoch); the session ends then.
    pub expiry_secs: u64,
    /// The Plug and Play model the device declared (`model-id` in its user name), stamped on
    /// its telemetry as `dt-dataschema`.
    pub model_id: Option<String>,
}

/// A refused CONNECT: the code the device sees and the reason for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// CONNACK return code.
    pub code: ConnectReturnCode,
    /// What happened, for an operator.
    pub reason: String,
}

fn refuse(code: ConnectReturnCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
    }
}

/// Authenticates `connect` at `now_secs`.
pub fn authenticate(
    connect: &Connect,
    cache: &IdentityCache,
    accepted_hosts: &[String],
    now_secs: u64,
) -> Result<Authenticated, Refusal> {
    let client = ClientId::parse(&connect.client_id).map_err(|error| {
        refuse(
            ConnectReturnCode::IdentifierRejected,
            format!("client id: {error}"),
        )
    })?;
    let model_id = match &connect.username {
        Some(username) => Username::parse(username, &connect.client_id)
            .map_err(|error| {
                refuse(
                    ConnectReturnCode::BadUserNameOrPassword,
                    format!("username: {error}"),
                )
            })?
            .model_id
            .map(std::borrow::Cow::into_owned),
        None => None,
    };
    let password = connect.password.as_deref().ok_or_else(|| {
        refuse(
            ConnectReturnCode::NotAuthorized,
            "no password: a SAS token is required (X.509 client certificates are not enabled)",
        )
    })?;
    let token = SasToken::parse(password).map_err(|error| {
        refuse(
            ConnectReturnCode::BadUserNameOrPassword,
            format!("password: {error}"),
        )
    })?;
    let scope = authorize(&token, &client, accepted_hosts)
        .map_err(|error| refuse(ConnectReturnCode::NotAuthorized, format!("token: {error}")))?;
    let identity = cache
        .identity(client.device_id(), client.module_id())
        .ok_or_else(|| {
            refuse(
                ConnectReturnCode::NotAuthorized,
                format!("identity '{}' is not registered", connect.client_id),
            )
        })?;
    if !identity.enabled {
        return Err(refuse(
            ConnectReturnCode::NotAuthorized,
            format!("identity '{}' is disabled", connect.client_id),
        ));
    }
    let checked = match scope {
        KeyScope::Device | KeyScope::Module => match &identity.credentials {
            Credentials::Sas { primary, secondary } => {
                token.verify_either(primary, secondary, now_secs)
            }
            _ => {
                return Err(refuse(
                    ConnectReturnCode::NotAuthorized,
                    format!(
                        "identity '{}' authenticates with X.509, not SAS keys",
                        connect.client_id
                    ),
                ));
            }
        },
        KeyScope::Policy { name } => {
            let policy = cache
                .policy(name)
                .filter(|policy| policy.device_connect)
                .ok_or_else(|| {
                    refuse(
                        ConnectReturnCode::NotAuthorized,
                        format!("policy '{name}' does not exist or lacks DeviceConnect"),
                    )
                })?;
            let primary = decode_key(&policy.primary_key).unwrap_or_default();
            let secondary = decode_key(&policy.secondary_key).unwrap_or_default();
            token.verify_either(&primary, &secondary, now_secs)
        }
    };
    checked.map_err(|error| match error {
        SasError::Expired { .. } => refuse(ConnectReturnCode::NotAuthorized, format!("{error}")),
        _ => refuse(
            ConnectReturnCode::NotAuthorized,
            format!("token for '{}': {error}", connect.client_id),
        ),
    })?;
    let method = match (scope, client.module_id()) {
        (KeyScope::Policy { .. }, _) => AuthMethod::HubSas,
        (_, Some(_)) => AuthMethod::ModuleSas,
        (_, None) => AuthMethod::DeviceSas,
    };
    Ok(Authenticated {
        key: identity.key.clone(),
        generation_id: identity.generation_id.clone(),
        method,
        expiry_secs: token.expiry_secs,
        model_id,
    })
}
