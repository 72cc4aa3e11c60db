//! What IoT Hub's MQTT rules refuse, and what the device sees when they do.

use std::fmt;

use super::SystemProperty;
use crate::mqtt::{ConnectReturnCode, Reaction};

/// Which kind of identity an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// A device id.
    Device,
    /// A module id.
    Module,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Device => "device",
            Self::Module => "module",
        })
    }
}

/// Why an id is not a valid IoT Hub id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdProblem {
    /// The id is empty.
    Empty,
    /// The id is longer than 128 bytes.
    TooLong {
        /// Its length in bytes.
        bytes: usize,
    },
    /// The id holds a character outside ASCII letters, digits and `-.+%_#*?!(),=@$'`.
    ForbiddenCharacter {
        /// The first such character.
        character: char,
        /// Its byte offset.
        at: usize,
    },
}

impl fmt::Display for IdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::TooLong { bytes } => write!(f, "it is {bytes} bytes long, more than 128"),
            Self::ForbiddenCharacter { character, at } => write!(
                f,
                "{character:?} at byte {at} is not an ASCII letter, digit or one of -.+%_#*?!(),=@$'"
            ),
        }
    }
}

/// An IoT Hub rule the device broke.
///
/// Connect-time variants are answered with a CONNACK refusal; the rest close the connection,
/// as IoT Hub does for a topic it does not serve or a message it will not take. Every
/// variant is terminal for the connection. [`Error::reaction`] gives the mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A device or module id breaks IoT Hub's id rules (R2). Over MQTT this comes from the
    /// CONNECT client id: CONNACK 2. The REST API answers 400 with the same reason.
    #[error("invalid {kind} id: {problem}")]
    InvalidId {
        /// Device or module.
        kind: IdKind,
        /// What is wrong with it.
        problem: IdProblem,
    },
    /// The CONNECT user name is not `{host}/{clientId}/?{query}`. CONNACK 4.
    #[error("malformed user name: {detail}; expected {{host}}/{{clientId}}/?api-version=...")]
    MalformedUsername {
        /// What is wrong with it.
        detail: &'static str,
    },
    /// The client id inside the user name differs from the CONNECT client id. CONNACK 4.
    #[error("the user name names a different client id than the CONNECT packet")]
    UsernameClientIdMismatch,
    /// A PUBLISH topic that IoT Hub does not serve, or one without what it needs (such as
    /// `$rid`). The connection is closed.
    #[error("unsupported publish topic: {detail}")]
    InvalidPublishTopic {
        /// Which part of the grammar it breaks.
        detail: &'static str,
    },
    /// A SUBSCRIBE or UNSUBSCRIBE filter that IoT Hub does not serve. The connection is
    /// closed.
    #[error("unsupported subscription: {detail}")]
    InvalidSubscription {
        /// Which part of the grammar it breaks.
        detail: &'static str,
    },
    /// A topic names another device or module than the one connected. The connection is
    /// closed.
    #[error("the topic names a device or module other than the connected one")]
    TopicIdentityMismatch,
    /// The property bag holds more properties than allowed. The connection is closed.
    #[error("{count} properties, more than the {max} allowed")]
    TooManyProperties {
        /// How many the bag holds.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// A property name is empty (`=value`). The connection is closed.
    #[error("a property has an empty name")]
    EmptyPropertyName,
    /// A property name is longer than allowed, after percent-decoding. The connection is
    /// closed.
    #[error("a property name of {bytes} bytes is longer than the {max} allowed")]
    PropertyNameTooLong {
        /// Its decoded length.
        bytes: usize,
        /// The bound.
        max: usize,
    },
    /// A property value is longer than allowed, after percent-decoding. The connection is
    /// closed.
    #[error("a property value of {bytes} bytes is longer than the {max} allowed")]
    PropertyValueTooLong {
        /// Its decoded length.
        bytes: usize,
        /// The bound.
        max: usize,
    },
    /// A system property appears twice. The connection is closed.
    #[error("the system property {0} appears twice")]
    DuplicateSystemProperty(SystemProperty),
    /// The message is larger than IoT Hub accepts, counted as IoT Hub counts (D2): body,
    /// system property values, application property names and values. The connection is
    /// closed; MQTT 3.1.1 cannot refuse a single message.
    #[error("a message of {bytes} bytes is larger than the {max} allowed")]
    MessageTooLarge {
        /// Its size as IoT Hub counts it.
        bytes: usize,
        /// The bound.
        max: usize,
    },
    /// `$.exp` is not an ISO-8601 date and time. The connection is closed if the server
    /// enforces expiry.
    #[error("the expiry time is not an ISO-8601 date and time: {detail}")]
    InvalidExpiry {
        /// Which part is wrong.
        detail: &'static str,
    },
    /// The SAS token's resource names a host this server does not answer to. CONNACK 5.
    #[error("the token was issued for a host this server does not answer to")]
    TokenHostNotAccepted,
    /// The SAS token's resource does not cover the connecting identity. CONNACK 5.
    #[error("the token does not authorize this identity: {detail}")]
    TokenScopeMismatch {
        /// How resource and identity differ.
        detail: &'static str,
    },
}

impl Error {
    /// What the device sees.
    pub const fn reaction(&self) -> Reaction {
        match self {
            Self::InvalidId { .. } => Reaction::ConnAck(ConnectReturnCode::IdentifierRejected),
            Self::MalformedUsername { .. } | Self::UsernameClientIdMismatch => {
                Reaction::ConnAck(ConnectReturnCode::BadUserNameOrPassword)
            }
            Self::TokenHostNotAccepted | Self::TokenScopeMismatch { .. } => {
                Reaction::ConnAck(ConnectReturnCode::NotAuthorized)
            }
            Self::InvalidPublishTopic { .. }
            | Self::InvalidSubscription { .. }
            | Self::TopicIdentityMismatch
            | Self::TooManyProperties { .. }
            | Self::EmptyPropertyName
            | Self::PropertyNameTooLong { .. }
            | Self::PropertyValueTooLong { .. }
            | Self::DuplicateSystemProperty(_)
            | Self::MessageTooLarge { .. }
            | Self::InvalidExpiry { .. } => Reaction::Disconnect,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index of a variant's row in the table below. The match has no wildcard, so a new
    /// variant does not compile until it has a row.
    fn row(error: &Error) -> usize {
        match error {
            Error::InvalidId { .. } => 0,
            Error::MalformedUsername { .. } => 1,
            Error::UsernameClientIdMismatch => 2,
            Error::InvalidPublishTopic { .. } => 3,
            Error::InvalidSubscription { .. } => 4,
            Error::TopicIdentityMismatch => 5,
            Error::TooManyProperties { .. } => 6,
            Error::EmptyPropertyName => 7,
            Error::PropertyNameTooLong { .. } => 8,
            Error::PropertyValueTooLong { .. } => 9,
            Error::DuplicateSystemProperty(_) => 10,
            Error::MessageTooLarge { .. } => 11,
            Error::InvalidExpiry { .. } => 12,
            Error::TokenHostNotAccepted => 13,
            Error::TokenScopeMismatch { .. } => 14,
        }
    }

    /// Every variant with the reaction a device must see: identity problems are CONNACK 2,
    /// user name problems CONNACK 4, token scope problems CONNACK 5, and everything after
    /// CONNECT closes the connection.
    #[test]
    fn every_variant_is_mapped_to_what_the_device_sees() {
        let disconnect = Reaction::Disconnect;
        let table = [
            (
                Error::InvalidId {
                    kind: IdKind::Device,
                    problem: IdProblem::Empty,
                },
                Reaction::ConnAck(ConnectReturnCode::IdentifierRejected),
            ),
            (
                Error::MalformedUsername { detail: "x" },
                Reaction::ConnAck(ConnectReturnCode::BadUserNameOrPassword),
            ),
            (
                Error::UsernameClientIdMismatch,
                Reaction::ConnAck(ConnectReturnCode::BadUserNameOrPassword),
            ),
            (Error::InvalidPublishTopic { detail: "x" }, disconnect),
            (Error::InvalidSubscription { detail: "x" }, disconnect),
            (Error::TopicIdentityMismatch, disconnect),
            (Error::TooManyProperties { count: 2, max: 1 }, disconnect),
            (Error::EmptyPropertyName, disconnect),
            (Error::PropertyNameTooLong { bytes: 2, max: 1 }, disconnect),
            (Error::PropertyValueTooLong { bytes: 2, max: 1 }, disconnect),
            (
                Error::DuplicateSystemProperty(SystemProperty::MessageId),
                disconnect,
            ),
            (Error::MessageTooLarge { bytes: 2, max: 1 }, disconnect),
            (Error::InvalidExpiry { detail: "x" }, disconnect),
            (
                Error::TokenHostNotAccepted,
                Reaction::ConnAck(ConnectReturnCode::NotAuthorized),
            ),
            (
                Error::TokenScopeMismatch { detail: "x" },
                Reaction::ConnAck(ConnectReturnCode::NotAuthorized),
            ),
        ];
        let mut seen = [false; 15];
        for (error, reaction) in &table {
            assert_eq!(error.reaction(), *reaction, "{error}");
            assert!(!error.to_string().is_empty());
            seen[row(error)] = true;
        }
        assert!(
            seen.iter().all(|&seen| seen),
            "a variant has no row: {seen:?}"
        );
    }

    #[test]
    fn id_problems_read_as_sentences() {
        let error = Error::InvalidId {
            kind: IdKind::Module,
            problem: IdProblem::ForbiddenCharacter {
                character: '/',
                at: 3,
            },
        };
        assert_eq!(
            error.to_string(),
            "invalid module id: '/' at byte 3 is not an ASCII letter, digit or one of -.+%_#*?!(),=@$'"
        );
    }
}
