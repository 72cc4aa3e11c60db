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
}

impl SessionHandle {
    /// A handle for the session on `socket` whose writer wakes through `wake_writer`.
    pub fn new(key: IdentityKey, socket: RawFd, wake_writer: Rc<LocalSender<()>>) -> Self {
        Self {
            key,
            socket,
            close_reason: Cell::new(None),
            wake_writer,
            activity_ms: Cell::new(None),
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
