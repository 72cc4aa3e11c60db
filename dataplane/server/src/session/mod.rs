//! Sessions: per-connection tasks that move bytes between a socket and the shard.

pub mod amqp;
pub mod mqtt;
pub mod persistent;

use std::cell::Cell;
use std::os::fd::RawFd;
use std::rc::Rc;

use glommio::channels::local_channel::LocalSender;
use schemas::plane::IdentityKey;

/// What the shard keeps of a live session: enough to close it and to report its activity.
#[derive(Debug)]
pub struct SessionHandle {
    /// Who is connected.
    pub key: IdentityKey,
    socket: RawFd,
    close_reason: Cell<Option<&'static str>>,
    wake_writer: Rc<LocalSender<()>>,
    /// Last time the device sent something, not yet reported (ms since the Unix epoch).
    activity_ms: Cell<Option<i64>>,
    /// When the session must end unless the device sends something first (keep-alive).
    silence_deadline_ms: Cell<i64>,
    /// When the device's token expires; the session ends then.
    expiry_ms: i64,
    /// Bytes the session's buffers hold (capacity), for the shard's memory report.
    buffer_bytes: Cell<usize>,
}

impl SessionHandle {
    /// A handle for the session on `socket` whose writer wakes through `wake_writer`.
    pub fn new(
        key: IdentityKey,
        socket: RawFd,
        wake_writer: Rc<LocalSender<()>>,
        expiry_ms: i64,
    ) -> Self {
        Self {
            key,
            socket,
            close_reason: Cell::new(None),
            wake_writer,
            activity_ms: Cell::new(None),
            silence_deadline_ms: Cell::new(i64::MAX),
            expiry_ms,
            buffer_bytes: Cell::new(0),
        }
    }

    /// Records the bytes the session's buffers hold now.
    pub fn set_buffer_bytes(&self, bytes: usize) {
        self.buffer_bytes.set(bytes);
    }

    /// Bytes the session's buffers hold.
    pub fn buffer_bytes(&self) -> usize {
        self.buffer_bytes.get()
    }

    /// Moves the keep-alive deadline: the session ends if nothing arrives by `deadline_ms`.
    pub fn set_silence_deadline(&self, deadline_ms: i64) {
        self.silence_deadline_ms.set(deadline_ms);
    }

    /// Closes the session if its keep-alive or its token ran out by `now_ms`; one check per
    /// session from the shard's sweeper, instead of a timer per read.
    pub fn close_if_expired(&self, now_ms: i64) {
        if now_ms >= self.expiry_ms {
            tracing::info!(device_id = %self.key.device_id, "closing the connection: the SAS token expired");
            self.close("the SAS token expired");
        } else if now_ms >= self.silence_deadline_ms.get() {
            tracing::info!(device_id = %self.key.device_id, "closing the connection: keep-alive expired (nothing received for 1.5x the keep-alive)");
            self.close("keep-alive expired");
        }
    }

    /// Asks the session to end: the socket is shut down (its reads end at once) and the writer
    /// stops. Acknowledged messages are already committed; unacknowledged ones are resent by
    /// the device after it reconnects.
    pub fn close(&self, reason: &'static str) {
        if self.close_reason.get().is_some() {
            return;
        }
        self.close_reason.set(Some(reason));
        // SAFETY: `socket` is the session's descriptor, open for as long as the session (and so
        // this handle, which the session unregisters before closing it) lives. shutdown(2)
        // does not close the descriptor.
        unsafe {
            libc::shutdown(self.socket, libc::SHUT_RDWR);
        }
        let _ = self.wake_writer.try_send(());
    }

    /// Why the session was asked to end, if it was.
    pub fn close_reason(&self) -> Option<&'static str> {
        self.close_reason.get()
    }

    /// Notes activity at `now_ms`.
    pub fn touch(&self, now_ms: i64) {
        self.activity_ms.set(Some(now_ms));
    }

    /// The activity not yet reported, if any.
    pub fn take_activity(&self) -> Option<i64> {
        self.activity_ms.take()
    }
}
