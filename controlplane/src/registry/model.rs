//! The identity registry's records, as stored and as the REST API shows them.
//!
//! A record is what the control plane owns (keys, status, etag). Runtime fields that the data
//! plane reports (connection state, last activity) live in [`RuntimeState`] beside it, so a
//! flood of connection events never rewrites identity documents or changes their etags.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `enabled` or `disabled`; a disabled identity cannot connect (checklist R5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// May connect.
    Enabled,
    /// Refused at connect; live connections are closed.
    Disabled,
}

/// How an identity authenticates (checklist R6-R9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Authentication {
    /// Symmetric keys (base64), either of which signs SAS tokens.
    Sas {
        /// Primary key, base64.
        primary_key: String,
        /// Secondary key, base64.
        secondary_key: String,
    },
    /// X.509 certificates identified by thumbprint (hex SHA-1 or SHA-256).
    SelfSigned {
        /// Primary thumbprint, upper-case hex.
        primary_thumbprint: String,
        /// Secondary thumbprint, upper-case hex; may be empty.
        secondary_thumbprint: Option<String>,
    },
    /// X.509 certificates chaining to a CA registered with the hub.
    CertificateAuthority,
    /// No credentials of its own (modules managed by IoT Edge).
    None,
}

impl Authentication {
    /// The API's name for the type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Sas { .. } => "sas",
            Self::SelfSigned { .. } => "selfSigned",
            Self::CertificateAuthority => "certificateAuthority",
            Self::None => "none",
        }
    }
}

/// A device identity as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Case-sensitive id, validated by the R2 charset.
    pub device_id: String,
    /// Set at creation, never changed; distinguishes a re-created device from the old one.
    pub generation_id: String,
    /// Changes on every write; `If-Match` compares against it.
    pub etag: String,
    /// Enabled or disabled.
    pub status: Status,
    /// Free text, at most 128 characters.
    pub status_reason: Option<String>,
    /// When `status` last changed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub status_updated_time: Option<OffsetDateTime>,
    /// Credentials.
    pub authentication: Authentication,
    /// `capabilities.iotEdge`.
    pub iot_edge: bool,
    /// Edge scope of this device, if any.
    pub device_scope: Option<String>,
    /// Edge parent scopes.
    pub parent_scopes: Vec<String>,
}

/// A module identity as stored; it belongs to a device and goes when the device goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRecord {
    /// The owning device.
    pub device_id: String,
    /// Case-sensitive module id.
    pub module_id: String,
    /// Set at creation.
    pub generation_id: String,
    /// Changes on every write.
    pub etag: String,
    /// Who manages the module (`IotEdge` for edge modules), if anyone.
    pub managed_by: Option<String>,
    /// Credentials.
    pub authentication: Authentication,
}

/// What the data plane reports about an identity; never part of its etag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuntimeState {
    /// Whether a connection is live.
    pub connected: bool,
    /// When `connected` last changed.
    pub connection_state_updated_time: Option<OffsetDateTime>,
    /// When the identity last sent or received anything.
    pub last_activity_time: Option<OffsetDateTime>,
    /// C2D messages waiting for the device.
    pub cloud_to_device_message_count: i64,
}

/// `0001-01-01T00:00:00Z`: IoT Hub's "never", which the SDKs parse.
pub const NEVER: &str = "0001-01-01T00:00:00Z";

/// Formats a time the way IoT Hub does (UTC, `Z`, fraction only when non-zero).
pub fn format_time(time: Option<OffsetDateTime>) -> String {
    match time {
        None => NEVER.to_owned(),
        Some(time) => {
            let time = time.to_offset(time::UtcOffset::UTC);
            let format = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z"
            );
            time.format(&format).unwrap_or_else(|_| NEVER.to_owned())
        }
    }
}
