//! Sockets and epoll, thinly over libc.
//!
//! The generator and the floor broker run one thread each over a level-triggered epoll set:
//! one `read` per readiness and one `write` per connection per turn of the loop, which is the
//! least work per message a readiness API allows. `epoll_pwait2` gives nanosecond time-outs
//! (plain `epoll_wait` rounds to milliseconds, which would make the open-loop schedule late);
//! the timer slack of the thread is lowered for the same reason.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

/// Readable.
pub const IN: u32 = libc::EPOLLIN as u32;
/// Writable.
pub const OUT: u32 = libc::EPOLLOUT as u32;
/// Error or hang-up.
pub const ERR: u32 = (libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// An epoll instance.
#[derive(Debug)]
pub struct Epoll {
    fd: RawFd,
    /// `epoll_pwait2` is missing (kernels before 5.11): fall back to millisecond waits.
    coarse: bool,
}

/// One readiness event: the caller's token and the ready set.
pub type EpollEvent = libc::epoll_event;

impl Epoll {
    /// A new epoll set.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall without pointers.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Self { fd, coarse: false })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: `event` is a valid epoll_event for the duration of the call.
        check(unsafe { libc::epoll_ctl(self.fd, op, fd, &raw mut event) }).map(drop)
    }

    /// Watches `fd` for `events` (level-triggered), reporting `token`.
    pub fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, events)
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, events)
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits up to `timeout_ns` (`None` = forever) and fills `events`; returns how many.
    pub fn wait(
        &mut self,
        events: &mut [EpollEvent],
        timeout_ns: Option<u64>,
    ) -> io::Result<usize> {
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        loop {
            let rc = if self.coarse {
                let ms = timeout_ns.map_or(-1, |ns| ns.div_ceil(1_000_000).min(60_000) as i32);
                // SAFETY: `events` is a valid, writable buffer of `max` events.
                unsafe { libc::epoll_wait(self.fd, events.as_mut_ptr(), max, ms) }
            } else {
                let ts = timeout_ns.map(|ns| libc::timespec {
                    tv_sec: (ns / 1_000_000_000) as libc::time_t,
                    tv_nsec: (ns % 1_000_000_000) as libc::c_long,
                });
                let ts_ptr = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
                // SAFETY: `events` is a valid buffer of `max` events, `ts_ptr` is null or
                // points at a timespec that outlives the call, and no signal mask is passed.
                unsafe {
                    libc::syscall(
                        libc::SYS_epoll_pwait2,
                        self.fd,
                        events.as_mut_ptr(),
                        max,
                        ts_ptr,
                        std::ptr::null::<libc::sigset_t>(),
                        0_usize,
                    ) as libc::c_int
                }
            };
            if rc >= 0 {
                return Ok(rc as usize);
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::ENOSYS) if !self.coarse => self.coarse = true,
                _ => return Err(error),
            }
        }
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

/// An empty event buffer of `n` entries.
pub fn event_buffer(n: usize) -> Vec<EpollEvent> {
    vec![libc::epoll_event { events: 0, u64: 0 }; n]
}

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in>(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in6>(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a valid c_int for the duration of the call.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Starts a non-blocking TCP connect to `to`, from `from` (a local address to bind first,
/// port chosen by the kernel) if given. Returns the socket; completion shows as writable.
pub fn connect_nonblocking(to: &SocketAddr, from: Option<IpAddr>) -> io::Result<RawFd> {
    let family = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall without pointers.
    let fd = check(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    let result = (|| {
        set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
        if let Some(ip) = from {
            // Without this, source ports are allocated at connect time per destination, and a
            // bind to port 0 would reserve a port for every destination (ephemeral exhaustion
            // at ~28k sockets per source address).
            set_int_option(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
            let (addr, len) = sockaddr(&SocketAddr::new(ip, 0));
            // SAFETY: `addr` is a valid sockaddr of `len` bytes.
            check(unsafe { libc::bind(fd, (&raw const addr).cast(), len) })?;
        }
        let (addr, len) = sockaddr(to);
        // SAFETY: `addr` is a valid sockaddr of `len` bytes.
        let rc = unsafe { libc::connect(fd, (&raw const addr).cast(), len) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(error);
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(fd),
        Err(error) => {
            close(fd);
            Err(error)
        }
    }
}

/// The pending error of a socket (`SO_ERROR`): how a non-blocking connect ended.
pub fn take_socket_error(fd: RawFd) -> io::Result<()> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of their sizes.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut value).cast(),
            &raw mut len,
        )
    })?;
    if value == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(value))
    }
}

/// A listening socket with `SO_REUSEADDR` (and `SO_REUSEPORT` for several floor-broker
/// threads), non-blocking.
pub fn listen(addr: &SocketAddr, backlog: i32) -> io::Result<RawFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall without pointers.
    let fd = check(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    let result = (|| {
        set_int_option(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        set_int_option(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        let (sa, len) = sockaddr(addr);
        // SAFETY: `sa` is a valid sockaddr of `len` bytes.
        check(unsafe { libc::bind(fd, (&raw const sa).cast(), len) })?;
        // SAFETY: plain syscall.
        check(unsafe { libc::listen(fd, backlog) })?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(fd),
        Err(error) => {
            close(fd);
            Err(error)
        }
    }
}

/// The port a socket is bound to.
pub fn local_port(fd: RawFd) -> io::Result<u16> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` are valid for writes.
    check(unsafe { libc::getsockname(fd, (&raw mut storage).cast(), &raw mut len) })?;
    let port = match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in>() };
            sin.sin_port
        }
        _ => {
            // SAFETY: otherwise it holds a sockaddr_in6.
            let sin6 = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_port
        }
    };
    Ok(u16::from_be(port))
}

/// Accepts one connection (non-blocking, with `TCP_NODELAY`); `Ok(None)` when none waits.
pub fn accept(listener: RawFd) -> io::Result<Option<RawFd>> {
    // SAFETY: null address pointers are allowed.
    let fd = unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(error),
        };
    }
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    Ok(Some(fd))
}

/// Closes a socket.
pub fn close(fd: RawFd) {
    // SAFETY: the caller owns the fd and never uses it again.
    unsafe { libc::close(fd) };
}

/// Closes a socket with a reset instead of a FIN (`SO_LINGER` 0): how a device that loses
/// power looks to the server.
pub fn abort(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is valid for the duration of the call; failure only means a FIN.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    close(fd);
}

/// One `read(2)`.
#[inline]
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One `write(2)` (`send` with `MSG_NOSIGNAL`, so a closed peer is an error, not a signal).
#[inline]
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `Read` + `Write` over a borrowed fd, for rustls' `read_tls`/`write_tls`.
#[derive(Debug, Clone, Copy)]
pub struct FdIo(pub RawFd);

impl io::Read for FdIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read(self.0, buf)
    }
}

impl io::Write for FdIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write(self.0, buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let count = bufs.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
        // SAFETY: IoSlice is ABI-compatible with iovec, and `count` slices are valid.
        let n = unsafe { libc::writev(self.0, bufs.as_ptr().cast(), count) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is an empty set; CPU_SET stays within it for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * size_of::<libc::cpu_set_t>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cpu out of range",
            ));
        }
        libc::CPU_SET(cpu, &mut set);
        check(libc::sched_setaffinity(
            0,
            size_of::<libc::cpu_set_t>(),
            &raw const set,
        ))
        .map(drop)
    }
}

/// Asks for 1 ns timer slack on this thread (the default 50 us would make every open-loop
/// wake-up up to 50 us late).
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and cannot fail harmfully.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_u64, 0_u64, 0_u64, 0_u64);
    }
}

/// The soft and hard limits of open files.
pub fn nofile_limit() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is valid for writes.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) };
    (limit.rlim_cur, limit.rlim_max)
}

/// Raises the soft open-file limit towards `wanted` (up to the hard limit); returns the
/// soft limit now in force.
pub fn raise_nofile_limit(wanted: u64) -> u64 {
    let (soft, hard) = nofile_limit();
    if soft >= wanted {
        return soft;
    }
    let limit = libc::rlimit {
        rlim_cur: wanted.min(hard),
        rlim_max: hard,
    };
    // SAFETY: `limit` is a valid rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) };
    nofile_limit().0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback listener, a non-blocking connect to it, and one byte each way through
    /// `read`/`write`, with readiness from epoll.
    #[test]
    fn loopback_connect_and_epoll_readiness() {
        let listener = listen(&"127.0.0.1:0".parse().expect("addr"), 16).expect("listen");
        let port = local_port(listener).expect("port");
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        let client =
            connect_nonblocking(&to, Some("127.0.0.2".parse().expect("ip"))).expect("connect");
        let mut epoll = Epoll::new().expect("epoll");
        epoll.add(client, 7, IN | OUT).expect("add");
        let mut events = event_buffer(8);
        let n = epoll.wait(&mut events, Some(2_000_000_000)).expect("wait");
        assert_eq!(n, 1);
        let token = events[0].u64;
        assert_eq!(token, 7);
        take_socket_error(client).expect("connected");
        let server = loop {
            if let Some(fd) = accept(listener).expect("accept") {
                break fd;
            }
        };
        assert_eq!(write(client, b"x").expect("write"), 1);
        epoll.add(server, 9, IN).expect("add");
        let mut buf = [0_u8; 4];
        loop {
            let n = epoll.wait(&mut events, Some(2_000_000_000)).expect("wait");
            if events[..n].iter().any(|e| e.u64 == 9) {
                break;
            }
        }
        assert_eq!(read(server, &mut buf).expect("read"), 1);
        assert_eq!(buf[0], b'x');
        // A short time-out expires without events and without rounding up to 1 ms.
        let start = crate::clock::now_ns();
        epoll.modify(client, 7, IN).expect("modify");
        let n = epoll.wait(&mut events, Some(100_000)).expect("wait");
        assert_eq!(n, 0);
        assert!(crate::clock::now_ns() - start < 50_000_000);
        for fd in [client, server, listener] {
            close(fd);
        }
    }

    #[test]
    fn refused_connect_reports_the_error() {
        // Port 1 on loopback is closed in any sane test environment.
        let to = SocketAddr::from(([127, 0, 0, 1], 1));
        match connect_nonblocking(&to, None) {
            Err(error) => assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused),
            Ok(fd) => {
                let mut epoll = Epoll::new().expect("epoll");
                epoll.add(fd, 1, OUT).expect("add");
                let mut events = event_buffer(1);
                epoll.wait(&mut events, Some(2_000_000_000)).expect("wait");
                let error = take_socket_error(fd).expect_err("refused");
                assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
                close(fd);
            }
        }
    }
}
