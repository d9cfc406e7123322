//! Driving a rustls unbuffered connection over byte buffers, with no I/O: the handshake steps,
//! opening received records and sealing outgoing bytes. Both the server and the client side go
//! through the one [`Records`] trait, so the handshake, the session and the sealer are written
//! once for both.
//!
//! rustls 0.23's `ReadTraffic` hands out each record's plaintext from a buffer of its own (it
//! does not yet decrypt in place in the caller's buffer), so a received byte is copied once into
//! the session's record buffer and once by rustls; the frame decoder then reads rustls's
//! plaintext where it is.

use rustls::client::ClientConnectionData;
use rustls::client::UnbufferedClientConnection;
use rustls::server::ServerConnectionData;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::CommonState;

use crate::tls::error::TlsError;

/// A rustls unbuffered connection, server or client.
pub(crate) trait Records: Send + 'static {
    /// rustls's side data of this kind of connection.
    type Data;
    /// `process_tls_records`.
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    /// The negotiated parameters and the peer's certificates.
    fn common(&self) -> &CommonState;
}

/// The same two methods on both sides: rustls defines `process_tls_records` on each concrete
/// connection type, not generically.
macro_rules! records {
    ($conn:ty, $data:ty) => {
        impl Records for $conn {
            type Data = $data;
            fn process<'c, 'i>(
                &'c mut self,
                incoming: &'i mut [u8],
            ) -> UnbufferedStatus<'c, 'i, Self::Data> {
                self.process_tls_records(incoming)
            }
            fn common(&self) -> &CommonState {
                self
            }
        }
    };
}

records!(UnbufferedServerConnection, ServerConnectionData);
records!(UnbufferedClientConnection, ClientConnectionData);

/// One connection's TLS state, shared by its receiving session and its sealer.
pub(crate) struct TlsState<C> {
    pub(crate) conn: C,
    /// Handshake bytes rustls produced while receiving (a key update's answer): sent before the
    /// next sealed bytes.
    pub(crate) pending_out: Vec<u8>,
    /// The peer sent `close_notify`.
    pub(crate) peer_closed: bool,
}

/// Where a handshake stands after [`handshake_step`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// More bytes from the peer are needed (send `outgoing` first).
    NeedMore,
    /// Done: application data may flow (send `outgoing` first).
    Done,
}

/// Largest TLS record on the wire: 2^14 bytes of plaintext plus 256 of expansion and the header.
pub(crate) const MAX_RECORD: usize = 5 + (1 << 14) + 256;

/// Appends what `encode` writes to `out`, growing it as asked.
fn encode_into(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, InsufficientSizeError>,
) -> usize {
    let start = out.len();
    let mut room = 4096;
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return n;
            }
            Err(InsufficientSizeError { required_size }) => room = required_size,
        }
    }
}

fn encode_err(e: EncodeError) -> Result<usize, InsufficientSizeError> {
    match e {
        EncodeError::InsufficientSize(e) => Err(e),
        // Encoded already: nothing more to write.
        EncodeError::AlreadyEncoded => Ok(0),
    }
}

/// Runs the handshake on the bytes in `incoming[*start..]` (what it consumed moves `*start`);
/// what to send to the peer is appended to `outgoing`.
pub(crate) fn handshake_step<C: Records>(
    st: &mut TlsState<C>,
    incoming: &mut [u8],
    start: &mut usize,
    outgoing: &mut Vec<u8>,
) -> Result<Handshake, TlsError> {
    loop {
        let UnbufferedStatus { discard, state } = st.conn.process(&mut incoming[*start..]);
        let state = state.map_err(TlsError::Handshake)?;
        let next = match state {
            ConnectionState::EncodeTlsData(mut enc) => {
                encode_into(outgoing, |buf| enc.encode(buf).or_else(encode_err));
                None
            }
            // The bytes are in `outgoing`, which the caller sends before anything else.
            ConnectionState::TransmitTlsData(tx) => {
                tx.done();
                None
            }
            ConnectionState::BlockedHandshake => Some(Handshake::NeedMore),
            // Application data may flow (records already opened stay with rustls, for the
            // session to take); a TLS 1.3 server may send before the client's last flight,
            // but the handshake (and the client's certificate) is checked only with it.
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                return Err(TlsError::HandshakeEof)
            }
            _ => Some(Handshake::Done),
        };
        *start += discard;
        match next {
            Some(Handshake::Done) if st.conn.common().is_handshaking() => {
                return Ok(Handshake::NeedMore)
            }
            Some(next) => return Ok(next),
            None => {}
        }
    }
}

/// Seals `plain` into records appended to `wire`, after any handshake bytes rustls has to
/// send first.
pub(crate) fn seal<C: Records>(
    st: &mut TlsState<C>,
    plain: &[u8],
    wire: &mut Vec<u8>,
) -> Result<(), TlsError> {
    wire.extend_from_slice(&st.pending_out);
    st.pending_out.clear();
    loop {
        let UnbufferedStatus { state, .. } = st.conn.process(&mut []);
        match state.map_err(TlsError::Protocol)? {
            ConnectionState::EncodeTlsData(mut enc) => {
                encode_into(wire, |buf| enc.encode(buf).or_else(encode_err));
            }
            ConnectionState::TransmitTlsData(tx) => tx.done(),
            ConnectionState::PeerClosed => st.peer_closed = true,
            ConnectionState::WriteTraffic(mut w) => {
                // Per record: a 5-byte header, an 8-byte explicit nonce (TLS 1.2) or a content
                // type byte (TLS 1.3), and a 16-byte tag.
                let records = plain.len().div_ceil(1 << 14).max(1);
                let start = wire.len();
                let mut room = plain.len() + records * 32;
                loop {
                    wire.resize(start + room, 0);
                    match w.encrypt(plain, &mut wire[start..]) {
                        Ok(n) => {
                            wire.truncate(start + n);
                            return Ok(());
                        }
                        Err(EncryptError::InsufficientSize(e)) => room = e.required_size,
                        Err(EncryptError::EncryptExhausted) => {
                            wire.truncate(start);
                            return Err(TlsError::Exhausted);
                        }
                    }
                }
            }
            _ => return Err(TlsError::NotWritable),
        }
    }
}

/// Appends a sealed `close_notify` alert (after any handshake bytes rustls has to send) to
/// `wire`: what a clean close sends last. `false` if the connection cannot send one now.
pub(crate) fn close_notify<C: Records>(st: &mut TlsState<C>, wire: &mut Vec<u8>) -> bool {
    let start = wire.len();
    wire.extend_from_slice(&st.pending_out);
    st.pending_out.clear();
    let UnbufferedStatus { state, .. } = st.conn.process(&mut []);
    let Ok(ConnectionState::WriteTraffic(mut w)) = state else {
        wire.truncate(start);
        return false;
    };
    let at = wire.len();
    wire.resize(at + 64, 0);
    match w.queue_close_notify(&mut wire[at..]) {
        Ok(n) => {
            wire.truncate(at + n);
            true
        }
        Err(_) => {
            wire.truncate(start);
            false
        }
    }
}

/// What [`open`] found in the received bytes.
#[derive(Debug, Default)]
pub(crate) struct Opened {
    /// Bytes of the input consumed (whole records); the rest is a record cut short.
    pub(crate) consumed: usize,
}

/// Opens every whole record in `incoming`, giving each record's plaintext to `deliver` (an
/// error from it stops and is returned); handshake bytes rustls wants to send go to
/// `st.pending_out`.
pub(crate) fn open<C: Records, E: From<TlsError>>(
    st: &mut TlsState<C>,
    incoming: &mut [u8],
    mut deliver: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Opened, E> {
    let mut at = 0;
    loop {
        let UnbufferedStatus { discard, state } = st.conn.process(&mut incoming[at..]);
        let state = state.map_err(|e| E::from(TlsError::Protocol(e)))?;
        let more = match state {
            ConnectionState::ReadTraffic(mut read) => {
                while let Some(record) = read.next_record() {
                    let record = record.map_err(|e| E::from(TlsError::Protocol(e)))?;
                    deliver(record.payload)?;
                }
                true
            }
            ConnectionState::EncodeTlsData(mut enc) => {
                encode_into(&mut st.pending_out, |buf| {
                    enc.encode(buf).or_else(encode_err)
                });
                true
            }
            ConnectionState::TransmitTlsData(tx) => {
                tx.done();
                true
            }
            ConnectionState::PeerClosed => {
                st.peer_closed = true;
                true
            }
            _ => false,
        };
        at += discard;
        if !more {
            return Ok(Opened { consumed: at });
        }
    }
}
