//! Error conditions and the errors of each layer.
//!
//! Every error the peer can cause maps to the AMQP condition it is told about, through
//! `condition()`. Which frame carries it depends on the layer:
//!
//! | error | scope | peer sees |
//! |---|---|---|
//! | [`FrameError`] | connection | `close` with the condition, then the socket ends |
//! | [`ConnectionError`] | connection | `close` with the condition |
//! | [`SessionError`] | one session | `end` with the condition; the connection lives on |
//! | [`LinkError`] | one link | `detach(closed=true)` with the condition |
//! | [`MessageError`] | one message | `disposition(rejected)` or a management status code |
//!
//! [`ApiError`] is different: it is the caller's misuse of the API (sending on a link without
//! credit, answering a request twice) and the peer never sees it.

use std::fmt;

/// An AMQP 1.0 error condition (spec part 2.8.15-2.8.18), plus the vendor conditions Event
/// Hubs clients know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Condition {
    /// `amqp:internal-error`.
    InternalError,
    /// `amqp:not-found`.
    NotFound,
    /// `amqp:unauthorized-access`.
    UnauthorizedAccess,
    /// `amqp:decode-error`.
    DecodeError,
    /// `amqp:resource-limit-exceeded`.
    ResourceLimitExceeded,
    /// `amqp:not-allowed`.
    NotAllowed,
    /// `amqp:invalid-field`.
    InvalidField,
    /// `amqp:not-implemented`.
    NotImplemented,
    /// `amqp:resource-locked`.
    ResourceLocked,
    /// `amqp:precondition-failed`.
    PreconditionFailed,
    /// `amqp:resource-deleted`.
    ResourceDeleted,
    /// `amqp:illegal-state`.
    IllegalState,
    /// `amqp:frame-size-too-small`.
    FrameSizeTooSmall,
    /// `amqp:connection:forced`.
    ConnectionForced,
    /// `amqp:connection:framing-error`.
    FramingError,
    /// `amqp:connection:redirect`.
    ConnectionRedirect,
    /// `amqp:session:window-violation`.
    WindowViolation,
    /// `amqp:session:errant-link`.
    ErrantLink,
    /// `amqp:session:handle-in-use`.
    HandleInUse,
    /// `amqp:session:unattached-handle`.
    UnattachedHandle,
    /// `amqp:link:detach-forced`.
    DetachForced,
    /// `amqp:link:transfer-limit-exceeded`.
    TransferLimitExceeded,
    /// `amqp:link:message-size-exceeded`.
    MessageSizeExceeded,
    /// `amqp:link:redirect`.
    LinkRedirect,
    /// `amqp:link:stolen`: a receiver with a higher epoch took the partition.
    LinkStolen,
    /// `com.microsoft:server-busy`: the client retries.
    ServerBusy,
    /// `com.microsoft:argument-error`.
    ArgumentError,
    /// `com.microsoft:timeout`.
    Timeout,
}

impl Condition {
    /// Every condition, for tables and tests.
    pub const ALL: [Self; 28] = [
        Self::InternalError,
        Self::NotFound,
        Self::UnauthorizedAccess,
        Self::DecodeError,
        Self::ResourceLimitExceeded,
        Self::NotAllowed,
        Self::InvalidField,
        Self::NotImplemented,
        Self::ResourceLocked,
        Self::PreconditionFailed,
        Self::ResourceDeleted,
        Self::IllegalState,
        Self::FrameSizeTooSmall,
        Self::ConnectionForced,
        Self::FramingError,
        Self::ConnectionRedirect,
        Self::WindowViolation,
        Self::ErrantLink,
        Self::HandleInUse,
        Self::UnattachedHandle,
        Self::DetachForced,
        Self::TransferLimitExceeded,
        Self::MessageSizeExceeded,
        Self::LinkRedirect,
        Self::LinkStolen,
        Self::ServerBusy,
        Self::ArgumentError,
        Self::Timeout,
    ];

    /// The symbol written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InternalError => "amqp:internal-error",
            Self::NotFound => "amqp:not-found",
            Self::UnauthorizedAccess => "amqp:unauthorized-access",
            Self::DecodeError => "amqp:decode-error",
            Self::ResourceLimitExceeded => "amqp:resource-limit-exceeded",
            Self::NotAllowed => "amqp:not-allowed",
            Self::InvalidField => "amqp:invalid-field",
            Self::NotImplemented => "amqp:not-implemented",
            Self::ResourceLocked => "amqp:resource-locked",
            Self::PreconditionFailed => "amqp:precondition-failed",
            Self::ResourceDeleted => "amqp:resource-deleted",
            Self::IllegalState => "amqp:illegal-state",
            Self::FrameSizeTooSmall => "amqp:frame-size-too-small",
            Self::ConnectionForced => "amqp:connection:forced",
            Self::FramingError => "amqp:connection:framing-error",
            Self::ConnectionRedirect => "amqp:connection:redirect",
            Self::WindowViolation => "amqp:session:window-violation",
            Self::ErrantLink => "amqp:session:errant-link",
            Self::HandleInUse => "amqp:session:handle-in-use",
            Self::UnattachedHandle => "amqp:session:unattached-handle",
            Self::DetachForced => "amqp:link:detach-forced",
            Self::TransferLimitExceeded => "amqp:link:transfer-limit-exceeded",
            Self::MessageSizeExceeded => "amqp:link:message-size-exceeded",
            Self::LinkRedirect => "amqp:link:redirect",
            Self::LinkStolen => "amqp:link:stolen",
            Self::ServerBusy => "com.microsoft:server-busy",
            Self::ArgumentError => "com.microsoft:argument-error",
            Self::Timeout => "com.microsoft:timeout",
        }
    }

    /// The condition a symbol names, if it is one of ours.
    pub fn from_symbol(symbol: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == symbol)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error carried by `close`, `end` or `detach`: as the peer sent it, or as we sent it
/// when we ended a session or link on a protocol error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    /// The condition symbol, e.g. `amqp:connection:forced`.
    pub condition: String,
    /// The description, if any.
    pub description: Option<String>,
}

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.description {
            Some(description) => write!(f, "{}: {description}", self.condition),
            None => f.write_str(&self.condition),
        }
    }
}

/// A malformed frame. Terminal: the connection is closed with the condition, as far as the
/// framing still allows a `close` to be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame declares more bytes than our `max-frame-size`. Refused before any of it is
    /// buffered.
    #[error("frame of {size} bytes exceeds the max-frame-size {max}")]
    TooLarge {
        /// The declared frame size.
        size: u32,
        /// Our limit.
        max: u32,
    },
    /// The declared size is smaller than the 8-byte header.
    #[error("frame size {size} is smaller than the frame header")]
    TooSmall {
        /// The declared frame size.
        size: u32,
    },
    /// The data offset is below 2 or points past the end of the frame.
    #[error("data offset {doff} is invalid for a frame of {size} bytes")]
    BadDataOffset {
        /// The data offset, in 4-byte words.
        doff: u8,
        /// The declared frame size.
        size: u32,
    },
    /// A frame type other than the one the current layer expects (0 AMQP, 1 SASL).
    #[error("unexpected frame type {frame_type}")]
    UnexpectedType {
        /// The frame type byte.
        frame_type: u8,
    },
    /// The frame body is not a valid encoding of a known performative.
    #[error("undecodable frame body: {detail}")]
    Decode {
        /// What was wrong.
        detail: &'static str,
    },
}

impl FrameError {
    /// The condition the peer is told.
    pub fn condition(&self) -> Condition {
        match self {
            Self::TooLarge { .. }
            | Self::TooSmall { .. }
            | Self::BadDataOffset { .. }
            | Self::UnexpectedType { .. } => Condition::FramingError,
            Self::Decode { .. } => Condition::DecodeError,
        }
    }
}

/// A connection-level protocol violation or limit. Terminal: we send `close` with the
/// condition and the connection ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// A malformed frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A performative that is not valid in the connection's current state.
    #[error("{performative} is not allowed {state}")]
    UnexpectedPerformative {
        /// The performative received.
        performative: &'static str,
        /// Where the connection was.
        state: &'static str,
    },
    /// A frame on a channel with no session, or above our channel-max.
    #[error("frame on channel {channel}, which has no session")]
    UnknownChannel {
        /// The channel number.
        channel: u16,
    },
    /// A begin on a channel above our channel-max.
    #[error("channel {channel} exceeds the channel-max {max}")]
    ChannelMaxExceeded {
        /// The channel number.
        channel: u16,
        /// Our channel-max.
        max: u16,
    },
    /// More sessions than the configured bound.
    #[error("more than {max} sessions on one connection")]
    TooManySessions {
        /// The bound.
        max: usize,
    },
    /// The peer's max-frame-size is below the AMQP minimum of 512 bytes, or too small for a
    /// performative we must send.
    #[error("the peer's max-frame-size {size} is too small")]
    PeerFrameSizeTooSmall {
        /// The peer's max-frame-size.
        size: u32,
    },
    /// Nothing arrived within our idle time-out.
    #[error("no frame received for {idle_timeout_ms} ms")]
    IdleTimeout {
        /// Our advertised idle time-out.
        idle_timeout_ms: u32,
    },
    /// More input was buffered than allowed while the connection waited for the caller.
    #[error("more than {max} bytes of input buffered")]
    InputBufferFull {
        /// The bound in bytes.
        max: usize,
    },
}

impl ConnectionError {
    /// The condition the peer is told.
    pub fn condition(&self) -> Condition {
        match self {
            Self::Frame(error) => error.condition(),
            Self::UnexpectedPerformative { .. } | Self::UnknownChannel { .. } => {
                Condition::IllegalState
            }
            Self::ChannelMaxExceeded { .. } => Condition::NotAllowed,
            Self::TooManySessions { .. }
            | Self::IdleTimeout { .. }
            | Self::InputBufferFull { .. } => Condition::ResourceLimitExceeded,
            Self::PeerFrameSizeTooSmall { .. } => Condition::FrameSizeTooSmall,
        }
    }
}

/// A session-level protocol violation. Ends that session with the condition; other sessions
/// and the connection go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A transfer arrived while our incoming window was zero.
    #[error("transfer received with the incoming window closed")]
    WindowViolation,
    /// A frame names a handle that is not attached.
    #[error("handle {handle} is not attached")]
    UnattachedHandle {
        /// The peer's handle.
        handle: u32,
    },
    /// An attach reuses a handle that is still attached.
    #[error("handle {handle} is already in use")]
    HandleInUse {
        /// The peer's handle.
        handle: u32,
    },
    /// An attach uses a handle above our handle-max.
    #[error("handle {handle} exceeds the handle-max {max}")]
    HandleMaxExceeded {
        /// The peer's handle.
        handle: u32,
        /// Our handle-max.
        max: u32,
    },
    /// An attach beyond the configured number of links per connection, or beyond the
    /// peer's own handle-max.
    #[error("no link slot left (at most {max} links per connection)")]
    TooManyLinks {
        /// The bound.
        max: usize,
    },
}

impl SessionError {
    /// The condition the peer is told.
    pub fn condition(&self) -> Condition {
        match self {
            Self::WindowViolation => Condition::WindowViolation,
            Self::UnattachedHandle { .. } => Condition::UnattachedHandle,
            Self::HandleInUse { .. } => Condition::HandleInUse,
            Self::HandleMaxExceeded { .. } | Self::TooManyLinks { .. } => {
                Condition::ResourceLimitExceeded
            }
        }
    }
}

/// A link-level violation or limit. Detaches that link (closed) with the condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A transfer arrived on a link with no credit.
    #[error("transfer received without link credit")]
    TransferLimitExceeded,
    /// A (reassembled) message is larger than the link's max-message-size.
    #[error("message of at least {size} bytes exceeds the max-message-size {max}")]
    MessageSizeExceeded {
        /// The bytes received so far.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// A transfer on a link where the peer is the receiver.
    #[error("transfer received on a link where the peer is the receiver")]
    TransferOnReceivingLink,
    /// The first transfer of a delivery has no delivery-id, or a continuation changes it.
    #[error("transfer with a missing or inconsistent delivery-id")]
    BadDeliveryId,
    /// An attach whose source or target cannot be decoded.
    #[error("attach with an undecodable terminus: {detail}")]
    BadTerminus {
        /// What was wrong.
        detail: &'static str,
    },
}

impl LinkError {
    /// The condition the peer is told.
    pub fn condition(&self) -> Condition {
        match self {
            Self::TransferLimitExceeded => Condition::TransferLimitExceeded,
            Self::MessageSizeExceeded { .. } => Condition::MessageSizeExceeded,
            Self::TransferOnReceivingLink | Self::BadDeliveryId => Condition::IllegalState,
            Self::BadTerminus { .. } => Condition::DecodeError,
        }
    }
}

/// A message whose sections cannot be decoded, or that lacks what a request needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A section is not valid AMQP or not of the expected type.
    #[error("undecodable message section: {detail}")]
    Decode {
        /// What was wrong.
        detail: &'static str,
    },
    /// A required field or application property is absent or of the wrong type.
    #[error("missing or mistyped {field}")]
    MissingField {
        /// The field's name.
        field: &'static str,
    },
}

impl MessageError {
    /// The condition a `rejected` outcome carries for this message.
    pub fn condition(&self) -> Condition {
        match self {
            Self::Decode { .. } => Condition::DecodeError,
            Self::MissingField { .. } => Condition::InvalidField,
        }
    }
}

/// The caller used the API out of order. Never sent to the peer; nothing on the wire changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The link id does not name a live link (it detached, or never existed).
    #[error("no such link")]
    UnknownLink,
    /// The operation does not fit the link's role or state (e.g. sending on a link where we
    /// receive, accepting twice).
    #[error("the link is not in a state that allows this")]
    WrongLinkState,
    /// The link has no credit left; wait for [`crate::Event::LinkCredit`].
    #[error("no link credit")]
    NoCredit,
    /// The session's outgoing window is exhausted; the peer will widen it with a flow.
    #[error("the session window is closed")]
    WindowClosed,
    /// The request id does not name a pending request.
    #[error("no such request")]
    UnknownRequest,
    /// No receiving link on the request's node to answer on.
    #[error("no reply link for the request")]
    NoReplyLink,
    /// The connection is not open (SASL not done, or closing).
    #[error("the connection is not open")]
    NotOpen,
    /// No SASL decision is pending.
    #[error("no SASL exchange is waiting for a decision")]
    NoSaslPending,
    /// A value could not be encoded.
    #[error("value cannot be encoded: {detail}")]
    Encode {
        /// What was wrong.
        detail: &'static str,
    },
    /// The delivery id does not name an unsettled delivery on the link.
    #[error("no such unsettled delivery")]
    UnknownDelivery,
    /// The bound of unsettled outgoing deliveries per session is reached; wait for the
    /// peer's dispositions.
    #[error("{max} deliveries already unsettled")]
    TooManyUnsettled {
        /// The bound.
        max: usize,
    },
    /// The message is larger than the peer's max-message-size.
    #[error("message of {size} bytes exceeds the peer's max-message-size {max}")]
    MessageTooLarge {
        /// The message size.
        size: usize,
        /// The peer's bound.
        max: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_condition_round_trips_through_its_symbol() {
        for condition in Condition::ALL {
            assert_eq!(Condition::from_symbol(condition.as_str()), Some(condition));
        }
        assert_eq!(Condition::from_symbol("amqp:nonsense"), None);
    }

    /// One row per variant of every wire-visible error. `condition()` matches exhaustively,
    /// so a new variant cannot compile without a condition; this table pins which one, so a
    /// change of what the peer is told shows up as a failing row.
    #[test]
    fn every_error_maps_to_its_condition() {
        let frame = [
            (
                FrameError::TooLarge { size: 9, max: 8 },
                "amqp:connection:framing-error",
            ),
            (
                FrameError::TooSmall { size: 3 },
                "amqp:connection:framing-error",
            ),
            (
                FrameError::BadDataOffset { doff: 1, size: 8 },
                "amqp:connection:framing-error",
            ),
            (
                FrameError::UnexpectedType { frame_type: 7 },
                "amqp:connection:framing-error",
            ),
            (FrameError::Decode { detail: "x" }, "amqp:decode-error"),
        ];
        for (error, symbol) in frame {
            assert_eq!(error.condition().as_str(), symbol, "{error}");
        }
        let connection = [
            (
                ConnectionError::Frame(FrameError::Decode { detail: "x" }),
                "amqp:decode-error",
            ),
            (
                ConnectionError::UnexpectedPerformative {
                    performative: "begin",
                    state: "x",
                },
                "amqp:illegal-state",
            ),
            (
                ConnectionError::UnknownChannel { channel: 3 },
                "amqp:illegal-state",
            ),
            (
                ConnectionError::ChannelMaxExceeded { channel: 9, max: 1 },
                "amqp:not-allowed",
            ),
            (
                ConnectionError::TooManySessions { max: 1 },
                "amqp:resource-limit-exceeded",
            ),
            (
                ConnectionError::PeerFrameSizeTooSmall { size: 100 },
                "amqp:frame-size-too-small",
            ),
            (
                ConnectionError::IdleTimeout { idle_timeout_ms: 1 },
                "amqp:resource-limit-exceeded",
            ),
            (
                ConnectionError::InputBufferFull { max: 1 },
                "amqp:resource-limit-exceeded",
            ),
        ];
        for (error, symbol) in connection {
            assert_eq!(error.condition().as_str(), symbol, "{error}");
        }
        let session = [
            (
                SessionError::WindowViolation,
                "amqp:session:window-violation",
            ),
            (
                SessionError::UnattachedHandle { handle: 1 },
                "amqp:session:unattached-handle",
            ),
            (
                SessionError::HandleInUse { handle: 1 },
                "amqp:session:handle-in-use",
            ),
            (
                SessionError::HandleMaxExceeded { handle: 9, max: 1 },
                "amqp:resource-limit-exceeded",
            ),
            (
                SessionError::TooManyLinks { max: 1 },
                "amqp:resource-limit-exceeded",
            ),
        ];
        for (error, symbol) in session {
            assert_eq!(error.condition().as_str(), symbol, "{error}");
        }
        let link = [
            (
                LinkError::TransferLimitExceeded,
                "amqp:link:transfer-limit-exceeded",
            ),
            (
                LinkError::MessageSizeExceeded { size: 2, max: 1 },
                "amqp:link:message-size-exceeded",
            ),
            (LinkError::TransferOnReceivingLink, "amqp:illegal-state"),
            (LinkError::BadDeliveryId, "amqp:illegal-state"),
            (LinkError::BadTerminus { detail: "x" }, "amqp:decode-error"),
        ];
        for (error, symbol) in link {
            assert_eq!(error.condition().as_str(), symbol, "{error}");
        }
        let message = [
            (MessageError::Decode { detail: "x" }, "amqp:decode-error"),
            (
                MessageError::MissingField { field: "x" },
                "amqp:invalid-field",
            ),
        ];
        for (error, symbol) in message {
            assert_eq!(error.condition().as_str(), symbol, "{error}");
        }
    }
}
