//! The server side of the SASL layer.
//!
//! ```text
//! client                                   server
//!   AMQP 3 1 0 0  ───────────────────────▶
//!                 ◀───────────────────────  AMQP 3 1 0 0, sasl-mechanisms [MSSBCBS ANONYMOUS PLAIN]
//!   sasl-init     ───────────────────────▶  Event::SaslInit → caller → Connection::complete_sasl
//!                 ◀───────────────────────  sasl-outcome (0 ok | 1 auth)
//!   AMQP 0 1 0 0, open, begin, attach …  ─▶  (may arrive before our header: pipelining)
//! ```
//!
//! azure-eventhub requires ANONYMOUS in the list; the IoT Hub service SDK (uamqp) hangs up
//! unless MSSBCBS is there. Both authenticate later through `$cbs`. PLAIN carries
//! credentials in the init, which the caller checks.

use fe2o3_amqp_types::sasl::SaslInit as WireSaslInit;

/// A SASL mechanism we offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `ANONYMOUS`: no credentials; the client authenticates through `$cbs` afterwards.
    Anonymous,
    /// `MSSBCBS`: Microsoft's "authenticate through CBS" mechanism, used by uamqp.
    MsSbCbs,
    /// `PLAIN`: user name and password in the init.
    Plain,
}

impl Mechanism {
    /// The mechanism's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "ANONYMOUS",
            Self::MsSbCbs => "MSSBCBS",
            Self::Plain => "PLAIN",
        }
    }

    /// The mechanism a name selects, if we know it.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Anonymous, Self::MsSbCbs, Self::Plain]
            .into_iter()
            .find(|m| m.as_str() == name)
    }
}

/// PLAIN credentials (RFC 4616): `[authzid] NUL authcid NUL passwd`.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The identity to act as, if different from the user name.
    pub authzid: Option<String>,
    /// The user name.
    pub username: String,
    /// The password; for IoT Hub, often a SAS token.
    pub password: String,
}

impl std::fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never goes into logs.
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl PlainCredentials {
    /// Parses a PLAIN initial response.
    pub fn parse(response: &[u8]) -> Option<Self> {
        let mut parts = response.split(|&b| b == 0);
        let authzid = parts.next()?;
        let username = parts.next()?;
        let password = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).ok();
        Some(Self {
            authzid: if authzid.is_empty() {
                None
            } else {
                Some(text(authzid)?)
            },
            username: text(username)?,
            password: text(password)?,
        })
    }
}

/// A client's sasl-init, for the caller to decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslInit {
    /// The mechanism chosen.
    pub mechanism: Mechanism,
    /// The host name the client dialled (without port).
    pub hostname: Option<String>,
    /// The credentials, for PLAIN.
    pub plain: Option<PlainCredentials>,
}

/// The caller's answer to a [`SaslInit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslOutcome {
    /// Code 0: the AMQP layer follows.
    Ok,
    /// Code 1: authentication failed; the connection ends.
    Auth,
}

impl SaslOutcome {
    /// The sasl-outcome code.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Auth => 1,
        }
    }
}

/// What a sasl-init asks for: a mechanism we offer, or one we must refuse.
pub(crate) fn interpret_init(init: WireSaslInit, offered: &[Mechanism]) -> Option<SaslInit> {
    let mechanism = Mechanism::from_name(init.mechanism.as_str())?;
    if !offered.contains(&mechanism) {
        return None;
    }
    let plain = if mechanism == Mechanism::Plain {
        let response = init
            .initial_response
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default();
        Some(PlainCredentials::parse(&response)?)
    } else {
        None
    };
    Some(SaslInit {
        mechanism,
        hostname: init.hostname,
        plain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_credentials_parse_with_and_without_authzid() {
        let parsed = PlainCredentials::parse(b"\0user\0secret").expect("valid");
        assert_eq!(parsed.authzid, None);
        assert_eq!(parsed.username, "user");
        assert_eq!(parsed.password, "secret");
        let parsed = PlainCredentials::parse(b"admin\0user\0secret").expect("valid");
        assert_eq!(parsed.authzid.as_deref(), Some("admin"));
        assert!(PlainCredentials::parse(b"user\0secret").is_none());
        assert!(PlainCredentials::parse(b"a\0b\0c\0d").is_none());
    }

    #[test]
    fn plain_password_stays_out_of_debug_output() {
        let parsed = PlainCredentials::parse(b"\0user\0hunter2").expect("valid");
        assert!(!format!("{parsed:?}").contains("hunter2"));
    }

    #[test]
    fn mechanism_names_round_trip() {
        for mechanism in [Mechanism::Anonymous, Mechanism::MsSbCbs, Mechanism::Plain] {
            assert_eq!(Mechanism::from_name(mechanism.as_str()), Some(mechanism));
        }
        assert_eq!(Mechanism::from_name("EXTERNAL"), None);
    }
}
