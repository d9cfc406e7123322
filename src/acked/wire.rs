//! The acknowledged mode's bytes (`docs/acked-protocol.md`): the hello a writer sends first on
//! each connection, the listener's reply, and the tag on every frame the listener sends after
//! it. No I/O: parsing and writing byte slices, tested without a socket.

use crate::acked::error::AckError;
use crate::frame::Framing;

/// The first 8 bytes of a hello and of a reply: `FF FF FF FF "BSAK"`. As a length header its
/// first four bytes announce more than any maximum message size a plain peer accepts.
pub(crate) const MAGIC: [u8; 8] = [0xff, 0xff, 0xff, 0xff, b'B', b'S', b'A', b'K'];
/// The protocol version this crate speaks.
pub(crate) const VERSION: u8 = 1;
/// Bytes in a hello.
pub(crate) const HELLO_LEN: usize = 44;
/// Bytes in a reply.
pub(crate) const REPLY_LEN: usize = 24;
/// The first payload byte of a listener's frame that carries a reply message.
pub(crate) const TAG_MESSAGE: u8 = 0;
/// The first payload byte of a listener's frame that carries an acknowledgement.
pub(crate) const TAG_ACK: u8 = 1;
/// Payload bytes of an acknowledgement frame: the tag and the sequence number.
pub(crate) const ACK_LEN: usize = 9;

/// A writer session's id: random, fixed for the writer's life.
pub type SessionId = [u8; 16];

/// A writer's hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    /// The writer's session.
    pub(crate) session: SessionId,
    /// The sequence number of the first frame after the hello.
    pub(crate) first_seq: u64,
    /// The first sequence number never sent on an earlier connection.
    pub(crate) first_new: u64,
}

impl Hello {
    /// The hello's bytes.
    pub(crate) fn to_bytes(self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8] = VERSION;
        b[12..28].copy_from_slice(&self.session);
        b[28..36].copy_from_slice(&self.first_seq.to_be_bytes());
        b[36..44].copy_from_slice(&self.first_new.to_be_bytes());
        b
    }

    /// Parses a hello (exactly [`HELLO_LEN`] bytes).
    pub(crate) fn parse(b: &[u8; HELLO_LEN]) -> Result<Hello, AckError> {
        if b[..8] != MAGIC {
            return Err(AckError::PlainWriter);
        }
        if b[8] != VERSION {
            return Err(AckError::UnsupportedVersion(b[8]));
        }
        if b[9] != 0 || b[10..12] != [0, 0] {
            return Err(AckError::BadHello("flags or reserved bytes are not zero"));
        }
        let hello = Hello {
            session: b[12..28].try_into().unwrap_or_default(),
            first_seq: be64(&b[28..36]),
            first_new: be64(&b[36..44]),
        };
        if hello.first_seq == 0 {
            return Err(AckError::BadHello("first_seq is 0"));
        }
        if hello.first_new < hello.first_seq {
            return Err(AckError::BadHello("first_new is before first_seq"));
        }
        Ok(hello)
    }
}

/// A listener's reply to a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The listener knew the session.
    pub(crate) known: bool,
    /// The last message of the session it delivered (0: none, or unknown).
    pub(crate) delivered: u64,
}

impl Reply {
    /// The reply's bytes.
    pub(crate) fn to_bytes(self) -> [u8; REPLY_LEN] {
        let mut b = [0u8; REPLY_LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8] = VERSION;
        b[9] = u8::from(self.known);
        b[16..24].copy_from_slice(&self.delivered.to_be_bytes());
        b
    }

    /// Parses a reply (exactly [`REPLY_LEN`] bytes).
    pub(crate) fn parse(b: &[u8; REPLY_LEN]) -> Result<Reply, AckError> {
        if b[..8] != MAGIC {
            return Err(AckError::PlainListener);
        }
        if b[8] != VERSION {
            return Err(AckError::UnsupportedVersion(b[8]));
        }
        let known = match b[9] {
            0 => false,
            1 => true,
            _ => return Err(AckError::BadReply("status is neither 0 nor 1")),
        };
        if b[10..16] != [0; 6] {
            return Err(AckError::BadReply("reserved bytes are not zero"));
        }
        let delivered = be64(&b[16..24]);
        if !known && delivered != 0 {
            return Err(AckError::BadReply(
                "an unknown session with messages delivered",
            ));
        }
        Ok(Reply { known, delivered })
    }
}

/// What a listener's frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerFrame<'a> {
    /// A reply message.
    Message(&'a [u8]),
    /// An acknowledgement: every message up to this one was delivered.
    Ack(u64),
}

impl<'a> ListenerFrame<'a> {
    /// Reads a listener frame's payload.
    pub(crate) fn parse(payload: &'a [u8]) -> Result<ListenerFrame<'a>, AckError> {
        match payload.first() {
            Some(&TAG_MESSAGE) => Ok(ListenerFrame::Message(&payload[1..])),
            Some(&TAG_ACK) if payload.len() == ACK_LEN => {
                Ok(ListenerFrame::Ack(be64(&payload[1..])))
            }
            Some(&TAG_ACK) => Err(AckError::BadAck("an ack's payload is not 9 bytes")),
            Some(&tag) => Err(AckError::BadTag(tag)),
            None => Err(AckError::BadAck("an empty frame")),
        }
    }
}

/// An acknowledgement frame's payload.
pub(crate) fn ack_payload(seq: u64) -> [u8; ACK_LEN] {
    let mut b = [TAG_ACK; ACK_LEN];
    b[1..].copy_from_slice(&seq.to_be_bytes());
    b
}

/// Whether acknowledged mode can run on `framing`: not on 2-byte headers (every value is a
/// valid length, so a plain listener would take the hello for a frame) nor delimiters (an
/// ack's bytes could hold the delimiter).
pub(crate) fn check_framing(framing: Framing) -> Result<(), AckError> {
    match framing {
        Framing::U16Be | Framing::U16Le | Framing::Delimited(_) => Err(AckError::Framing(framing)),
        _ => Ok(()),
    }
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Collects a fixed number of raw bytes that may arrive over several reads.
#[derive(Debug)]
pub(crate) struct Prefix<const N: usize> {
    buf: [u8; N],
    have: usize,
}

impl<const N: usize> Prefix<N> {
    pub(crate) fn new() -> Self {
        Prefix {
            buf: [0; N],
            have: 0,
        }
    }

    /// Takes what it still needs from `data`; returns the bytes used and, once whole, the
    /// prefix.
    pub(crate) fn fill(&mut self, data: &[u8]) -> (usize, Option<&[u8; N]>) {
        let take = (N - self.have).min(data.len());
        self.buf[self.have..self.have + take].copy_from_slice(&data[..take]);
        self.have += take;
        (take, (self.have == N).then_some(&self.buf))
    }

    /// Bytes collected so far.
    pub(crate) fn have(&self) -> usize {
        self.have
    }

    /// Whether what was collected so far agrees with `magic` (so a plain peer's first bytes
    /// are refused at once, without waiting for a whole prefix that may never come).
    pub(crate) fn agrees_with(&self, magic: &[u8]) -> bool {
        let n = self.have.min(magic.len());
        self.buf[..n] == magic[..n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_and_reply_round_trip_in_the_documented_layout() {
        let hello = Hello {
            session: [7; 16],
            first_seq: 5,
            first_new: 9,
        };
        let b = hello.to_bytes();
        assert_eq!(&b[..12], b"\xff\xff\xff\xffBSAK\x01\x00\x00\x00");
        assert_eq!(&b[28..36], &5u64.to_be_bytes());
        assert_eq!(Hello::parse(&b), Ok(hello));
        let reply = Reply {
            known: true,
            delivered: 4,
        };
        let r = reply.to_bytes();
        assert_eq!(&r[..10], b"\xff\xff\xff\xffBSAK\x01\x01");
        assert_eq!(Reply::parse(&r), Ok(reply));
    }

    #[test]
    fn bad_hellos_and_replies_are_typed_errors() {
        let good = Hello {
            session: [1; 16],
            first_seq: 1,
            first_new: 1,
        }
        .to_bytes();
        let mut b = good;
        b[4] = b'X';
        assert_eq!(Hello::parse(&b), Err(AckError::PlainWriter));
        let mut b = good;
        b[8] = 2;
        assert_eq!(Hello::parse(&b), Err(AckError::UnsupportedVersion(2)));
        let mut b = good;
        b[9] = 1;
        assert!(matches!(Hello::parse(&b), Err(AckError::BadHello(_))));
        let mut b = good;
        b[35] = 0;
        assert!(matches!(Hello::parse(&b), Err(AckError::BadHello(_))));
        let mut b = good;
        b[43] = 0;
        b[35] = 2;
        assert!(matches!(Hello::parse(&b), Err(AckError::BadHello(_))));
        // A plain listener's first frame is no reply.
        let mut r = [0u8; REPLY_LEN];
        r[3] = 5;
        assert_eq!(Reply::parse(&r), Err(AckError::PlainListener));
    }

    #[test]
    fn listener_frames_are_tagged() {
        assert_eq!(
            ListenerFrame::parse(b"\x00hi"),
            Ok(ListenerFrame::Message(b"hi"))
        );
        assert_eq!(
            ListenerFrame::parse(&ack_payload(77)),
            Ok(ListenerFrame::Ack(77))
        );
        assert_eq!(ListenerFrame::parse(b"\x07"), Err(AckError::BadTag(7)));
        assert!(ListenerFrame::parse(b"\x01\x00").is_err());
        assert!(ListenerFrame::parse(b"").is_err());
    }

    #[test]
    fn a_prefix_arrives_in_pieces() {
        let mut p = Prefix::<4>::new();
        assert_eq!(p.fill(b"ab"), (2, None));
        assert!(p.agrees_with(b"abXY") && !p.agrees_with(b"aX"));
        let (used, whole) = p.fill(b"cdef");
        assert_eq!(used, 2);
        assert_eq!(whole, Some(b"abcd"));
    }

    #[test]
    fn framings_without_an_impossible_header_are_refused() {
        assert!(check_framing(Framing::U16Be).is_err());
        assert!(check_framing(Framing::Delimited(b'\n')).is_err());
        assert!(check_framing(Framing::U32Be).is_ok());
        assert!(check_framing(Framing::Varint).is_ok());
    }
}
