//! The floor broker: an MQTT 3.1.1 "broker" that does nothing but answer.
//!
//! It parses CONNECT and PUBLISH and answers CONNACK and PUBACK (plus PINGRESP and a SUBACK
//! granting QoS 0), stores nothing and routes nothing. One thread, one level-triggered epoll
//! set, one `read` per readiness and one `write` per connection carrying every reply that
//! read caused. With TLS it is rustls, like Shoal. What it reaches is what the machine's
//! syscalls, TCP and TLS allow a broker on one core: every other figure reads as a fraction
//! of it.

use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::mqtt;
use crate::net::{self, Epoll, FdIo};

/// What the floor broker counts (readable while it runs).
#[derive(Debug, Default)]
pub struct FloorCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// CONNECTs answered.
    pub connects: AtomicU64,
    /// PUBLISH packets received.
    pub publishes: AtomicU64,
    /// PUBACKs sent.
    pub pubacks: AtomicU64,
    /// Connections closed for a protocol or TLS error.
    pub errors: AtomicU64,
}

/// A floor broker bound to a port, ready to [`FloorBroker::run`].
#[derive(Debug)]
pub struct FloorBroker {
    listener: RawFd,
    port: u16,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Counters, shared.
    pub counters: Arc<FloorCounters>,
}

struct Client {
    fd: RawFd,
    generation: u32,
    tls: Option<Box<rustls::ServerConnection>>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_at: usize,
    want_out: bool,
}

const LISTENER: u64 = u64::MAX;
const PACKET_BYTES_MAX: usize = 1 << 20;

impl FloorBroker {
    /// Binds `addr` (port 0 picks one); `tls` turns on TLS.
    pub fn bind(addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<Self> {
        let listener = net::listen(&addr, 4096)?;
        let port = net::local_port(listener)?;
        Ok(Self {
            listener,
            port,
            tls,
            counters: Arc::default(),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `stop` is set (checked at least every 100 ms).
    pub fn run(self, stop: &AtomicBool) -> io::Result<()> {
        let mut epoll = Epoll::new()?;
        epoll.add(self.listener, LISTENER, net::IN)?;
        let mut clients: Vec<Option<Client>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut generations: Vec<u32> = Vec::new();
        let mut events = net::event_buffer(1024);
        let mut scratch = vec![0_u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            let n = epoll.wait(&mut events, Some(100_000_000))?;
            for event in &events[..n] {
                let token = event.u64;
                if token == LISTENER {
                    self.accept_all(&epoll, &mut clients, &mut free, &mut generations);
                    continue;
                }
                let i = (token & 0xffff_ffff) as usize;
                let generation = (token >> 32) as u32;
                let Some(Some(client)) = clients.get_mut(i) else {
                    continue;
                };
                if client.generation != generation {
                    continue;
                }
                let keep = if event.events & (net::IN | net::ERR) != 0 {
                    serve_readable(client, &mut scratch, &self.counters)
                } else {
                    true
                };
                let keep = keep && write_out(&epoll, client, i);
                if !keep {
                    let _ = epoll.delete(client.fd);
                    net::close(client.fd);
                    clients[i] = None;
                    free.push(i);
                }
            }
        }
        for client in clients.into_iter().flatten() {
            net::close(client.fd);
        }
        net::close(self.listener);
        Ok(())
    }

    fn accept_all(
        &self,
        epoll: &Epoll,
        clients: &mut Vec<Option<Client>>,
        free: &mut Vec<usize>,
        generations: &mut Vec<u32>,
    ) {
        loop {
            // Nothing waiting, or EMFILE and friends: stop accepting for this turn rather
            // than spin.
            let Ok(Some(fd)) = net::accept(self.listener) else {
                return;
            };
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
            let tls = match &self.tls {
                Some(config) => match rustls::ServerConnection::new(config.clone()) {
                    Ok(conn) => Some(Box::new(conn)),
                    Err(_) => {
                        net::close(fd);
                        continue;
                    }
                },
                None => None,
            };
            let i = free.pop().unwrap_or_else(|| {
                clients.push(None);
                generations.push(0);
                clients.len() - 1
            });
            generations[i] = generations[i].wrapping_add(1);
            let generation = generations[i];
            let token = (u64::from(generation) << 32) | i as u64;
            if epoll.add(fd, token, net::IN).is_err() {
                net::close(fd);
                free.push(i);
                continue;
            }
            clients[i] = Some(Client {
                fd,
                generation,
                tls,
                inbuf: Vec::new(),
                out: Vec::new(),
                out_at: 0,
                want_out: false,
            });
        }
    }
}

/// Reads once and answers every complete packet; false when the connection must close.
fn serve_readable(client: &mut Client, scratch: &mut [u8], counters: &FloorCounters) -> bool {
    if let Some(tls) = client.tls.as_deref_mut() {
        match tls.read_tls(&mut FdIo(client.fd)) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return true;
            }
            Err(_) => return false,
        }
        if tls.process_new_packets().is_err() {
            // Tell the client why (the alert is queued), then close.
            let _ = tls.write_tls(&mut FdIo(client.fd));
            counters.errors.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        loop {
            let tls = client.tls.as_deref_mut().expect("checked");
            match tls.reader().read(scratch) {
                Ok(0) => return false,
                Ok(n) => {
                    if !answer(client, &scratch[..n], counters) {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    }
    match net::read(client.fd, scratch) {
        Ok(0) => false,
        Ok(n) => answer(client, &scratch[..n], counters),
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    }
}

/// Parses packets from `data` (after any partial packet kept from before) and appends the
/// replies to the output buffer.
fn answer(client: &mut Client, data: &[u8], counters: &FloorCounters) -> bool {
    let mut inbuf = std::mem::take(&mut client.inbuf);
    let owned = !inbuf.is_empty();
    if owned {
        inbuf.extend_from_slice(data);
    }
    let bytes: &[u8] = if owned { &inbuf } else { data };
    let mut at = 0;
    let mut publishes = 0;
    let mut pubacks = 0;
    let ok = loop {
        match mqtt::split_packet(&bytes[at..], PACKET_BYTES_MAX) {
            Ok(Some((packet, used))) => {
                at += used;
                match packet.kind {
                    mqtt::PUBLISH => {
                        publishes += 1;
                        match mqtt::parse_publish(&packet) {
                            Ok(info) if info.qos == 1 => {
                                mqtt::put_puback(&mut client.out, info.packet_id);
                                pubacks += 1;
                            }
                            Ok(info) if info.qos == 0 => {}
                            _ => break false,
                        }
                    }
                    mqtt::CONNECT => {
                        if mqtt::check_connect(packet.body).is_err() {
                            break false;
                        }
                        counters.connects.fetch_add(1, Ordering::Relaxed);
                        mqtt::put_connack(&mut client.out, false, 0);
                    }
                    mqtt::PINGREQ => client.out.extend_from_slice(&mqtt::PINGRESP_PACKET),
                    mqtt::SUBSCRIBE => {
                        let Some(suback) = suback_for(packet.body) else {
                            break false;
                        };
                        client.out.extend_from_slice(&suback);
                    }
                    _ => break false,
                }
            }
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    counters.publishes.fetch_add(publishes, Ordering::Relaxed);
    counters.pubacks.fetch_add(pubacks, Ordering::Relaxed);
    if !ok {
        return false;
    }
    if owned {
        inbuf.drain(..at);
    } else {
        inbuf.clear();
        inbuf.extend_from_slice(&data[at..]);
    }
    client.inbuf = inbuf;
    true
}

/// A SUBACK granting QoS 0 to every filter of a SUBSCRIBE body.
fn suback_for(body: &[u8]) -> Option<Vec<u8>> {
    let (id, mut rest) = body.split_at_checked(2)?;
    let mut granted = 0;
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        rest = tail.get(len + 1..)?;
        granted += 1;
    }
    let mut out = vec![mqtt::SUBACK << 4];
    mqtt::put_remaining_length(&mut out, 2 + granted);
    out.extend_from_slice(id);
    out.extend(std::iter::repeat_n(0_u8, granted));
    Some(out)
}

/// Writes pending output once; false when the connection failed.
fn write_out(epoll: &Epoll, client: &mut Client, i: usize) -> bool {
    let blocked = if let Some(tls) = client.tls.as_deref_mut() {
        if !client.out.is_empty() {
            match tls.writer().write(&client.out) {
                Ok(n) if n == client.out.len() => client.out.clear(),
                Ok(n) => {
                    client.out.drain(..n);
                }
                Err(_) => return false,
            }
        }
        let mut blocked = false;
        while tls.wants_write() {
            match tls.write_tls(&mut FdIo(client.fd)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        blocked || !client.out.is_empty()
    } else {
        let mut blocked = false;
        while client.out_at < client.out.len() {
            match net::write(client.fd, &client.out[client.out_at..]) {
                Ok(n) => client.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if !blocked {
            client.out.clear();
            client.out_at = 0;
        }
        blocked
    };
    if blocked != client.want_out {
        let events = if blocked { net::IN | net::OUT } else { net::IN };
        let token = (u64::from(client.generation) << 32) | i as u64;
        let _ = epoll.modify(client.fd, token, events);
        client.want_out = blocked;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suback_grants_qos0_to_each_filter() {
        // id 0x0102, filters "a/b" (QoS 1) and "c" (QoS 0).
        let body = [1, 2, 0, 3, b'a', b'/', b'b', 1, 0, 1, b'c', 0];
        assert_eq!(suback_for(&body), Some(vec![0x90, 4, 1, 2, 0, 0]));
        assert_eq!(suback_for(&[1]), None);
        assert_eq!(suback_for(&[1, 2, 0, 9, b'a']), None);
    }
}
