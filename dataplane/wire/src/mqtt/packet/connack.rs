//! CONNACK, the answer to CONNECT.
//!
//! ```text
//! ┌──────┬──────┬──────────────────────────────┬─────────────┐
//! │ 0x20 │ 0x02 │ 0000000 │ session present (1) │ return code │
//! └──────┴──────┴──────────────────────────────┴─────────────┘
//! ```

use bytes::BufMut;

/// The CONNACK return codes of MQTT 3.1.1 (§3.2.2.3). The device SDK treats 1 and 2 as client
/// errors, retries 3, and reports 4 and 5 as unauthorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnectReturnCode {
    /// The connection is accepted.
    Accepted = 0,
    /// The server does not speak the requested protocol level.
    UnacceptableProtocolVersion = 1,
    /// The client id is well-formed UTF-8 but not allowed.
    IdentifierRejected = 2,
    /// The service is unavailable; the device may retry.
    ServerUnavailable = 3,
    /// The user name or password is malformed.
    BadUserNameOrPassword = 4,
    /// The credentials do not authorize this client.
    NotAuthorized = 5,
}

/// The answer to CONNECT.
///
/// # Invariants
///
/// `session_present` is false unless `code` is [`ConnectReturnCode::Accepted`] (§3.2.2.2);
/// [`ConnAck::encode`] asserts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server kept a session for this client id from an earlier connection.
    pub session_present: bool,
    /// Accepted, or why not.
    pub code: ConnectReturnCode,
}

impl ConnAck {
    /// The encoded length.
    pub const BYTES: usize = 4;

    /// A refusal: `session_present` is always false.
    pub const fn refuse(code: ConnectReturnCode) -> Self {
        Self {
            session_present: false,
            code,
        }
    }

    /// Appends the packet to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        assert!(
            !self.session_present || self.code == ConnectReturnCode::Accepted,
            "a refused CONNACK cannot carry session present"
        );
        out.put_slice(&[0x20, 0x02, u8::from(self.session_present), self.code as u8]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connack_encodes_every_return_code() {
        for (code, byte) in [
            (ConnectReturnCode::Accepted, 0),
            (ConnectReturnCode::UnacceptableProtocolVersion, 1),
            (ConnectReturnCode::IdentifierRejected, 2),
            (ConnectReturnCode::ServerUnavailable, 3),
            (ConnectReturnCode::BadUserNameOrPassword, 4),
            (ConnectReturnCode::NotAuthorized, 5),
        ] {
            let mut out = Vec::new();
            ConnAck::refuse(code).encode(&mut out);
            assert_eq!(out, [0x20, 0x02, 0x00, byte]);
        }
        let mut out = Vec::new();
        ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted,
        }
        .encode(&mut out);
        assert_eq!(out, [0x20, 0x02, 0x01, 0x00]);
    }

    #[test]
    #[should_panic(expected = "session present")]
    fn a_refusal_with_session_present_is_a_bug() {
        ConnAck {
            session_present: true,
            code: ConnectReturnCode::NotAuthorized,
        }
        .encode(&mut Vec::new());
    }
}
