//! Listeners: one `SO_REUSEPORT` socket per listener per shard, so the kernel spreads new
//! connections over the shards and no shard accepts for another.

pub mod transport;

use std::net::SocketAddr;
use std::os::fd::{FromRawFd as _, IntoRawFd as _, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;

use glommio::net::TcpListener;

use crate::shard::Shard;

/// Listen backlog: connect storms queue here rather than being refused.
const BACKLOG: i32 = 4096;

/// How long a port held by someone else may take to become free before start fails.
///
/// A stopped Shoal's listening sockets outlive its process by up to a few hundred
/// milliseconds: they are registered with io_uring, whose teardown runs after the process is
/// gone. A restart right after a stop (`systemctl restart`, test harnesses) waits for that
/// instead of failing.
const PORT_RELEASE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Fails with `AddrInUse` if anything listens on `address`, whatever its socket options,
/// after waiting up to [`PORT_RELEASE_GRACE`] for it to go away.
///
/// Needed because two processes of the same user can both bind a port with `SO_REUSEPORT`,
/// and the kernel would then split connections between them; a bind without the option
/// fails while any socket holds the port.
pub fn check_port_free(address: SocketAddr) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + PORT_RELEASE_GRACE;
    loop {
        match std::net::TcpListener::bind(address) {
            Ok(_) => return Ok(()),
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Creates a listening socket with `SO_REUSEPORT`, so every shard can bind its own.
pub fn bind_reuseport(address: SocketAddr) -> std::io::Result<OwnedFd> {
    let domain = if address.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(OwnedFd::from(socket))
}

/// Accepts MQTT connections on `socket` until the shard stops.
pub async fn accept_mqtt(
    shard: Rc<Shard>,
    socket: OwnedFd,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    accept(shard, socket, tls, crate::session::mqtt::serve_accepted).await;
}

/// Accepts AMQP connections on `socket` until the shard stops.
pub async fn accept_amqp(
    shard: Rc<Shard>,
    socket: OwnedFd,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    accept(shard, socket, tls, crate::session::amqp::serve_accepted).await;
}

async fn accept<F: Future<Output = ()> + 'static>(
    shard: Rc<Shard>,
    socket: OwnedFd,
    tls: Option<Arc<rustls::ServerConfig>>,
    serve: fn(Rc<Shard>, glommio::net::TcpStream, Option<Arc<rustls::ServerConfig>>) -> F,
) {
    // SAFETY: the OwnedFd was the socket's sole owner; the listener takes that ownership.
    let listener = unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) };
    loop {
        let accepted = listener.accept().await;
        if shard.is_stopping() {
            return;
        }
        match accepted {
            Ok(stream) => {
                glommio::spawn_local(serve(Rc::clone(&shard), stream, tls.clone())).detach();
            }
            Err(error) => {
                // Out of descriptors or memory: wait instead of spinning.
                tracing::warn!(shard = shard.id, %error, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
