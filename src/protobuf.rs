//! Protocol Buffers through [`prost`] (cargo feature `prost`).
//!
//! `write_message` sizes the frame with the message's `encoded_len` and encodes it straight
//! into the send memory: no intermediate `Vec`, one pass over the message. With
//! [`Framing::Varint`](crate::Framing::Varint) the bytes on the wire are exactly prost's
//! `encode_length_delimited` (and Java's `writeDelimitedTo`, Go's `protodelim`).
//!
//! ```no_run
//! use buffstreams::{Framing, Writer, WriterConfig};
//!
//! #[derive(Clone, PartialEq, prost::Message)]
//! struct Ping {
//!     #[prost(uint64, tag = "1")]
//!     seq: u64,
//! }
//!
//! let writer = Writer::dial(WriterConfig::new("127.0.0.1:5031").framing(Framing::Varint))?;
//! writer.write_message(&Ping { seq: 1 })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::channel::Message;
use crate::error::WriteError;
use crate::stream::conn::Conn;
use crate::writer::{BufferedWriter, Writer};

/// Encodes `msg` into exactly the `encoded_len` bytes it is given; false if it wrote a
/// different amount (an inconsistent `Message` impl): nothing is queued then. Never panics on
/// such a message: what does not fit is counted, not written.
fn encode_exact<M: prost::Message>(msg: &M) -> impl FnOnce(&mut [u8]) -> bool + '_ {
    move |buf: &mut [u8]| {
        let mut out = Exact {
            buf,
            pos: 0,
            overflow: 0,
            scratch: [0; 64],
        };
        msg.encode_raw(&mut out);
        out.overflow == 0 && out.pos == out.buf.len()
    }
}

/// A `BufMut` over the frame's payload that counts bytes written past its end (into a scratch
/// area) instead of panicking, so a lying `encoded_len` is detected, not fatal.
struct Exact<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: usize,
    scratch: [u8; 64],
}

// SAFETY: `chunk_mut` hands out only memory this value owns or borrows mutably (the rest of the
// payload, or the scratch area once the payload is full), and `advance_mut` only moves the
// position within the payload or counts overflow, so no byte outside those is ever exposed.
unsafe impl bytes::BufMut for Exact<'_> {
    fn remaining_mut(&self) -> usize {
        // Unbounded as far as the encoder knows: overflow goes to the scratch area.
        isize::MAX as usize - self.pos - self.overflow.min(isize::MAX as usize / 2)
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        let room = self.buf.len() - self.pos;
        if self.overflow == 0 && cnt <= room {
            self.pos += cnt;
        } else {
            self.overflow = self.overflow.saturating_add(cnt);
        }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        if self.overflow == 0 && self.pos < self.buf.len() {
            bytes::buf::UninitSlice::new(&mut self.buf[self.pos..])
        } else {
            bytes::buf::UninitSlice::new(&mut self.scratch)
        }
    }
}

impl Writer {
    /// Queues a protobuf message, encoded straight into the send memory (see the
    /// [module docs](crate::protobuf)). Waits for room like [`Writer::write`]; returns the
    /// number of bytes framed.
    pub fn write_message<M: prost::Message>(&self, msg: &M) -> Result<usize, WriteError> {
        self.write_encoded(msg.encoded_len(), encode_exact(msg))
    }
}

impl BufferedWriter<'_> {
    /// Frames a protobuf message into the batch, encoded in place (see
    /// [`Writer::write_message`]).
    pub fn write_message<M: prost::Message>(&mut self, msg: &M) -> Result<usize, WriteError> {
        self.write_encoded(msg.encoded_len(), encode_exact(msg))
    }
}

impl Conn {
    /// Queues a protobuf message on this connection, encoded straight into the send memory.
    /// Waits for room like [`Conn::write`] (from the owning core a full queue returns
    /// [`WriteError::Full`] instead).
    ///
    /// ```no_run
    /// use buffstreams::{Framing, Listener, ListenerConfig};
    ///
    /// #[derive(Clone, PartialEq, prost::Message)]
    /// struct Ack {
    ///     #[prost(uint32, tag = "1")]
    ///     len: u32,
    /// }
    ///
    /// let listener = Listener::bind(
    ///     ListenerConfig::new("127.0.0.1:5031", |msg, conn| {
    ///         conn.write_message(&Ack { len: msg.len() as u32 })?;
    ///         Ok(())
    ///     })
    ///     .framing(Framing::Varint),
    /// )?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_message<M: prost::Message>(&self, msg: &M) -> Result<usize, WriteError> {
        self.write_encoded(msg.encoded_len(), encode_exact(msg))
    }
}

impl Message {
    /// Decodes the payload as a protobuf message of type `M`.
    ///
    /// In a handler, which gets the payload as `&[u8]`, use `M::decode(payload)` directly.
    pub fn decode_as<M: prost::Message + Default>(&self) -> Result<M, prost::DecodeError> {
        M::decode(self.payload.as_ref())
    }
}
