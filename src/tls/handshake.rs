//! A handshake in progress on one socket ([`Handshaking`]), driven by nonblocking reads and
//! writes as the socket becomes ready; [`client`] runs one to its end on a writer's dialing
//! thread. A listener's handshakes run on its handshake thread (`server.rs`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use crate::tls::error::TlsError;
use crate::tls::peer::TlsPeer;
use crate::tls::records::{handshake_step, Handshake, Records, TlsState, MAX_RECORD};
use crate::tls::session::Shared;

/// The most a handshake may hold unprocessed: a 64 KiB handshake message (rustls's limit; a
/// long certificate chain) spread over records, and the record being read.
const MAX_HANDSHAKE_BYTES: usize = (1 << 16) + 2 * MAX_RECORD;

/// What a finished handshake hands on: the shared state, the bytes read past its end, and
/// what it says of the peer.
pub(crate) struct Established<C> {
    pub(crate) shared: Shared<C>,
    pub(crate) leftover: Vec<u8>,
    pub(crate) peer: TlsPeer,
}

/// A handshake in progress.
pub(crate) struct Handshaking<C> {
    st: TlsState<C>,
    incoming: Vec<u8>,
    /// Bytes of `incoming` the handshake consumed.
    start: usize,
    outgoing: Vec<u8>,
    /// Bytes of `outgoing` the socket took.
    sent: usize,
    done: bool,
}

impl<C: Records> Handshaking<C> {
    pub(crate) fn new(conn: C) -> Self {
        Handshaking {
            st: TlsState {
                conn,
                pending_out: Vec::new(),
                peer_closed: false,
            },
            incoming: Vec::new(),
            start: 0,
            outgoing: Vec::new(),
            sent: 0,
            done: false,
        }
    }

    /// Runs the handshake on what was received: the client's first step writes its hello.
    pub(crate) fn step(&mut self) -> Result<(), TlsError> {
        if self.done {
            return Ok(());
        }
        let step = handshake_step(
            &mut self.st,
            &mut self.incoming,
            &mut self.start,
            &mut self.outgoing,
        )?;
        self.incoming.drain(..self.start);
        self.start = 0;
        self.done = step == Handshake::Done;
        Ok(())
    }

    /// Whether there are bytes for the peer.
    pub(crate) fn wants_write(&self) -> bool {
        self.sent < self.outgoing.len()
    }

    /// Whether the handshake is over and everything it had to send was sent.
    pub(crate) fn finished(&self) -> bool {
        self.done && !self.wants_write()
    }

    /// Reads what the socket has (without waiting), stepping the handshake as bytes come; stops
    /// reading once it is done (what the peer sent after it stays in the socket, but for the
    /// rest of the last read, kept for the session).
    pub(crate) fn read(&mut self, fd: &OwnedFd) -> Result<(), TlsError> {
        let mut buf = [0u8; 16 * 1024];
        while !self.done {
            // SAFETY: `buf` is a live stack buffer of the length passed; `fd` is an open socket
            // borrowed for the call.
            let n = syscall!(recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT
            ));
            let short = match n {
                Ok(0) => return Err(TlsError::HandshakeEof),
                Ok(n) => {
                    self.incoming.extend_from_slice(&buf[..n as usize]);
                    (n as usize) < buf.len()
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TlsError::HandshakeIo(e)),
            };
            self.step()?;
            if self.incoming.len() > MAX_HANDSHAKE_BYTES {
                // rustls refuses a handshake message over 64 KiB before this (one can span
                // records, and rustls keeps its start in this buffer): a bound all the same.
                return Err(TlsError::Handshake(rustls::Error::General(
                    "handshake messages too large".into(),
                )));
            }
            if short {
                // The socket had no more: spare the call that would say so (poll tells when
                // more comes).
                break;
            }
        }
        Ok(())
    }

    /// Writes what the socket takes (without waiting).
    pub(crate) fn write(&mut self, fd: &OwnedFd) -> Result<(), TlsError> {
        while self.wants_write() {
            let rest = &self.outgoing[self.sent..];
            // SAFETY: `rest` is live memory of the length passed, borrowed for the call; `fd`
            // is an open socket borrowed for the call.
            let n = syscall!(send(
                fd.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL
            ));
            match n {
                Ok(n) => self.sent += n as usize,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TlsError::HandshakeIo(e)),
            }
        }
        if !self.wants_write() {
            self.outgoing.clear();
            self.sent = 0;
        }
        Ok(())
    }

    /// The poll events this handshake waits for.
    pub(crate) fn events(&self) -> i16 {
        match self.wants_write() {
            true => libc::POLLIN | libc::POLLOUT,
            false => libc::POLLIN,
        }
    }

    /// The finished connection.
    pub(crate) fn established(self) -> Established<C> {
        let peer = TlsPeer::of(&self.st.conn);
        Established {
            shared: Arc::new(Mutex::new(self.st)),
            leftover: self.incoming,
            peer,
        }
    }
}

/// Waits (at most until `deadline`) for `events` on `fd`; `false` when the deadline passed.
pub(crate) fn wait(fd: &OwnedFd, events: i16, deadline: Instant) -> Result<bool, TlsError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Ok(false);
    }
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: `pfd` is one live pollfd on this stack frame, and the count passed is 1.
    match syscall!(poll(&mut pfd, 1, ms)) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
        Err(e) => Err(TlsError::HandshakeIo(e)),
    }
}

/// A writer's handshake on the socket it just connected, within `timeout`.
pub(crate) fn client(
    fd: &OwnedFd,
    config: &Arc<ClientConfig>,
    name: &ServerName<'static>,
    timeout: Duration,
) -> Result<Established<UnbufferedClientConnection>, TlsError> {
    let conn = UnbufferedClientConnection::new(config.clone(), name.clone())
        .map_err(TlsError::Handshake)?;
    let deadline = Instant::now() + timeout;
    let mut hs = Handshaking::new(conn);
    hs.step()?;
    loop {
        hs.write(fd)?;
        if hs.finished() {
            return Ok(hs.established());
        }
        if !wait(fd, hs.events(), deadline)? {
            return Err(TlsError::HandshakeTimeout(timeout));
        }
        hs.read(fd)?;
    }
}
