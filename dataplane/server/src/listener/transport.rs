//! A connection's byte pipe: TLS driven by hand over a glommio socket, or plain TCP.
//!
//! rustls is used sans-IO (`read_tls`/`process_new_packets`/`write_tls`) rather than through an
//! async wrapper, so that one socket read feeds every TLS record and MQTT/AMQP packet it holds,
//! and one socket write carries every response a burst produced: the syscall and wake-up per
//! read, not the crypto, is what costs most per message here.
//!
//! After the handshake the pipe splits in two ([`ReadPipe`], [`WritePipe`]) so that a session
//! can read the next packets while earlier acknowledgements wait for their flush; both halves
//! share the TLS state through an `Rc<RefCell<..>>` (one shard, one thread; no borrow is held
//! across an await).

use std::cell::RefCell;
use std::io::{self, BufRead as _, Write as _};

use bytes::BytesMut;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt as _, AsyncWriteExt as _, ReadHalf, WriteHalf};
use glommio::net::TcpStream;
use rustls::ServerConnection;

/// Bytes read from the socket per read call. Sized to hold a TLS record (16 KiB + overhead),
/// so that a full record never needs two reads.
pub const SOCKET_READ_BYTES: usize = 18 * 1024;

/// The TLS state of a connection, or none for plain TCP.
pub type SharedTls = Rc<RefCell<Option<ServerConnection>>>;

/// Why a pipe stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipeError {
    /// The socket failed (reset, broken pipe).
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The peer broke the TLS protocol (bad record, failed handshake, wrong version).
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The handshake did not finish in time.
    #[error("the TLS handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
}

/// A whole connection before it is split: used for the handshake and the first packet.
pub struct Pipe {
    stream: TcpStream,
    tls: SharedTls,
    raw_in: RawInput,
    raw_out: Vec<u8>,
}

/// Socket bytes read but not yet fed to TLS (or, for plain TCP, not yet handed out):
/// `bytes[start..end]`. The buffer keeps its length, so a read never zero-fills it again.
struct RawInput {
    bytes: Box<[u8]>,
    start: usize,
    end: usize,
}

impl RawInput {
    fn new(leftover: &[u8]) -> Self {
        let mut bytes = vec![0u8; SOCKET_READ_BYTES.max(leftover.len())].into_boxed_slice();
        bytes[..leftover.len()].copy_from_slice(leftover);
        Self {
            bytes,
            start: 0,
            end: leftover.len(),
        }
    }

    fn pending(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// Reads once from the socket into the empty buffer; `false` at end of stream.
    async fn refill<S: futures_lite::AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> io::Result<bool> {
        debug_assert!(self.start >= self.end, "refill with bytes pending");
        self.start = 0;
        self.end = 0;
        let read = stream.read(&mut self.bytes[..]).await?;
        self.end = read;
        Ok(read > 0)
    }
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Pipe").finish_non_exhaustive()
    }
}

impl Pipe {
    /// Wraps an accepted socket; `tls` is `None` for a plain-TCP listener.
    pub fn new(stream: TcpStream, tls: Option<ServerConnection>) -> Self {
        Self {
            stream,
            tls: Rc::new(RefCell::new(tls)),
            raw_in: RawInput::new(&[]),
            raw_out: Vec::with_capacity(4096),
        }
    }

    /// Rebuilds a pipe on another shard from a handed-over socket and TLS state; `raw_in`
    /// holds socket bytes read but not yet fed to TLS.
    pub fn adopt(stream: TcpStream, tls: Option<ServerConnection>, raw_in: &[u8]) -> Self {
        let mut pipe = Self::new(stream, tls);
        pipe.raw_in = RawInput::new(raw_in);
        pipe
    }

    /// The socket, for options and for handing it over.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Takes the pipe apart for a hand-over to another shard.
    pub fn into_parts(self) -> (TcpStream, Option<ServerConnection>, Vec<u8>) {
        let tls = self.tls.borrow_mut().take();
        let raw_in = self.raw_in.pending().to_vec();
        (self.stream, tls, raw_in)
    }

    /// Completes the TLS handshake (a no-op for plain TCP) within `timeout`.
    pub async fn handshake(&mut self, timeout: Duration) -> Result<(), PipeError> {
        let handshake = async {
            loop {
                self.flush_tls().await?;
                let handshaking = self
                    .tls
                    .borrow()
                    .as_ref()
                    .is_some_and(|connection| connection.is_handshaking());
                if !handshaking {
                    return Ok::<(), PipeError>(());
                }
                if !self.fill_tls().await? {
                    return Err(PipeError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
            }
        };
        match glommio::timer::timeout(timeout, async { Ok(handshake.await) }).await {
            Ok(result) => result,
            Err(_) => Err(PipeError::HandshakeTimeout(timeout)),
        }
    }

    /// Reads plaintext into `into`; returns `false` at end of stream.
    pub async fn read_plaintext(&mut self, into: &mut BytesMut) -> Result<bool, PipeError> {
        read_plaintext(&mut self.stream, &self.tls, &mut self.raw_in, into).await
    }

    /// Writes plaintext (encrypting it) and everything TLS has pending.
    pub async fn write_plaintext(&mut self, data: &[u8]) -> Result<(), PipeError> {
        write_plaintext(&mut self.stream, &self.tls, &mut self.raw_out, data).await
    }

    async fn flush_tls(&mut self) -> Result<(), PipeError> {
        write_plaintext(&mut self.stream, &self.tls, &mut self.raw_out, &[]).await
    }

    /// Reads once from the socket and feeds TLS; `false` at end of stream.
    async fn fill_tls(&mut self) -> Result<bool, PipeError> {
        fill_tls(&mut self.stream, &self.tls, &mut self.raw_in).await
    }

    /// Splits the pipe for a session: one half reads while the other writes.
    pub fn split(self) -> (ReadPipe, WritePipe) {
        let (reader, writer) = futures_lite::io::split(self.stream);
        (
            ReadPipe {
                stream: reader,
                tls: Rc::clone(&self.tls),
                raw_in: self.raw_in,
            },
            WritePipe {
                stream: writer,
                tls: self.tls,
                raw_out: self.raw_out,
            },
        )
    }
}

/// The reading half of a session's pipe.
pub struct ReadPipe {
    stream: ReadHalf<TcpStream>,
    tls: SharedTls,
    raw_in: RawInput,
}

impl ReadPipe {
    /// Reads plaintext into `into`; returns `false` at end of stream.
    pub async fn read_plaintext(&mut self, into: &mut BytesMut) -> Result<bool, PipeError> {
        read_plaintext(&mut self.stream, &self.tls, &mut self.raw_in, into).await
    }

    /// Whether TLS has output waiting (a key update, an alert): the writer should flush.
    pub fn tls_wants_write(&self) -> bool {
        self.tls
            .borrow()
            .as_ref()
            .is_some_and(|connection| connection.wants_write())
    }
}

/// The writing half of a session's pipe.
pub struct WritePipe {
    stream: WriteHalf<TcpStream>,
    tls: SharedTls,
    raw_out: Vec<u8>,
}

impl WritePipe {
    /// Writes plaintext (encrypting it) and everything TLS has pending, in one socket write.
    pub async fn write_plaintext(&mut self, data: &[u8]) -> Result<(), PipeError> {
        write_plaintext(&mut self.stream, &self.tls, &mut self.raw_out, data).await
    }

    /// Sends a TLS close_notify (if TLS) and shuts the socket's write side.
    pub async fn close(&mut self) {
        if let Some(tls) = self.tls.borrow_mut().as_mut() {
            tls.send_close_notify();
        }
        let _ = self.write_plaintext(&[]).await;
        let _ = self.stream.close().await;
    }
}

async fn fill_tls<S: futures_lite::AsyncRead + Unpin>(
    stream: &mut S,
    tls: &SharedTls,
    raw_in: &mut RawInput,
) -> Result<bool, PipeError> {
    if raw_in.start >= raw_in.end && !raw_in.refill(stream).await? {
        return Ok(false);
    }
    let mut guard = tls.borrow_mut();
    let Some(connection) = guard.as_mut() else {
        return Ok(true);
    };
    // rustls may take only part of the bytes when its buffer is full; the rest stays for the
    // next call, after the caller drained plaintext.
    let mut pending = raw_in.pending();
    let consumed = connection.read_tls(&mut pending)?;
    raw_in.start += consumed;
    connection.process_new_packets()?;
    Ok(true)
}

async fn read_plaintext<S: futures_lite::AsyncRead + Unpin>(
    stream: &mut S,
    tls: &SharedTls,
    raw_in: &mut RawInput,
    into: &mut BytesMut,
) -> Result<bool, PipeError> {
    loop {
        let is_tls = tls.borrow().is_some();
        if !is_tls {
            // Plain TCP: socket bytes are the plaintext.
            if raw_in.start >= raw_in.end && !raw_in.refill(stream).await? {
                return Ok(false);
            }
            into.extend_from_slice(raw_in.pending());
            raw_in.start = raw_in.end;
            return Ok(true);
        }
        {
            let mut guard = tls.borrow_mut();
            let connection = guard.as_mut().expect("checked above");
            let mut reader = connection.reader();
            let mut delivered = false;
            loop {
                match reader.fill_buf() {
                    // The peer sent close_notify: deliver what came before it, then end.
                    Ok([]) => return Ok(delivered),
                    Ok(chunk) => {
                        into.extend_from_slice(chunk);
                        let taken = chunk.len();
                        reader.consume(taken);
                        delivered = true;
                    }
                    // No more plaintext for now.
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                        return Ok(delivered);
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            if delivered {
                return Ok(true);
            }
        }
        if !fill_tls(stream, tls, raw_in).await? {
            return Ok(false);
        }
    }
}

async fn write_plaintext<S: futures_lite::AsyncWrite + Unpin>(
    stream: &mut S,
    tls: &SharedTls,
    raw_out: &mut Vec<u8>,
    data: &[u8],
) -> Result<(), PipeError> {
    raw_out.clear();
    {
        let mut guard = tls.borrow_mut();
        match guard.as_mut() {
            Some(connection) => {
                // rustls takes at most its buffer limit (64 KiB) of plaintext at a time; draining
                // its records into `raw_out` between calls lets one write carry any amount.
                let mut rest = data;
                loop {
                    let taken = connection.writer().write(rest)?;
                    rest = &rest[taken..];
                    while connection.wants_write() {
                        connection.write_tls(raw_out)?;
                    }
                    if rest.is_empty() {
                        break;
                    }
                    if taken == 0 {
                        return Err(io::Error::from(io::ErrorKind::WriteZero).into());
                    }
                }
            }
            None => raw_out.extend_from_slice(data),
        }
    }
    if !raw_out.is_empty() {
        stream.write_all(raw_out).await?;
    }
    Ok(())
}
