//! [`Codec`]: one framing with its maximum message size; encodes frames and parses headers.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::FrameError;
use crate::fixed::FixedHeader;
use crate::framing::{Framing, MAX_HEADER_LEN};
use crate::prepared::Frame;
use crate::{buffstreams, delimited, varint};

/// What [`Codec::parse`] found at the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// The buffer holds only the beginning of a frame (possibly nothing).
    Incomplete,
    /// The buffer starts with a complete frame: its payload is
    /// `buf[payload_start..payload_start + payload_len]` and it occupies `buf[..frame_len]`.
    Frame {
        /// Offset of the payload (the header length).
        payload_start: usize,
        /// Payload length.
        payload_len: usize,
        /// Length of the whole frame, header or delimiter included.
        frame_len: usize,
    },
}

/// Result of reading a length prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// More bytes are needed to know the length.
    Incomplete,
    /// The header is `header_len` bytes long and announces `payload_len` bytes (`<= max`).
    Known {
        header_len: usize,
        payload_len: usize,
    },
}

/// A framing plus a maximum message size. Immutable, `Copy` and cheap to pass around.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Codec {
    pub(super) framing: Framing,
    pub(super) max: usize,
    /// Largest header (or 1 for a delimiter); for BuffStreams, the fixed header length.
    pub(super) overhead: usize,
}

impl Codec {
    /// A codec for `framing` accepting messages of up to `max_message_size` bytes.
    ///
    /// Errors with [`FrameError::MaxTooLarge`] if the framing cannot represent that length: above
    /// 65535 for `U16*`, above `u32::MAX` for `U32*`, and for [`Framing::BuffStreams`] if its
    /// header of `H` bytes cannot hold `zigzag(max)` as a varint (`max` in `2^55..2^56` or
    /// `>= 2^62`; the Go library silently writes headers it cannot read back for those).
    ///
    /// For `BuffStreams`, 0 means 4096, Go's default, for both the header size and the limit. For
    /// the other framings 0 allows only empty messages. Since no buffer can exceed `isize::MAX`
    /// bytes, larger maximums (such as `usize::MAX` for "no limit") are lowered to
    /// `isize::MAX - MAX_HEADER_LEN`.
    ///
    /// ```
    /// use buffstreams_frame::{Codec, FrameError, Framing};
    /// let codec = Codec::new(Framing::U16Be, 1024)?;
    /// assert_eq!(codec.max_message_size(), 1024);
    /// assert!(matches!(
    ///     Codec::new(Framing::U16Be, 1 << 20),
    ///     Err(FrameError::MaxTooLarge { .. })
    /// ));
    /// # Ok::<(), FrameError>(())
    /// ```
    pub fn new(framing: Framing, max_message_size: usize) -> Result<Codec, FrameError> {
        let too_large = FrameError::MaxTooLarge {
            framing,
            max: max_message_size,
        };
        let clamp = |max: usize| max.min(isize::MAX as usize - MAX_HEADER_LEN);
        let (max, overhead) = match framing {
            Framing::BuffStreams => {
                let max = match max_message_size {
                    0 => buffstreams::GO_DEFAULT_MAX,
                    m => m,
                };
                (max, buffstreams::header_len(max).ok_or(too_large)?)
            }
            Framing::Varint => {
                let max = clamp(max_message_size);
                (max, varint::encoded_len(max as u64))
            }
            Framing::Delimited(_) => (clamp(max_message_size), 1),
            _ => {
                let fixed = framing.fixed().ok_or_else(|| too_large.clone())?;
                if max_message_size as u64 > fixed.max_value() {
                    return Err(too_large);
                }
                (clamp(max_message_size), fixed.len())
            }
        };
        Ok(Codec {
            framing,
            max,
            overhead,
        })
    }

    /// The wire format.
    #[inline]
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The largest payload accepted, in bytes.
    #[inline]
    pub fn max_message_size(&self) -> usize {
        self.max
    }

    /// Largest number of bytes of framing overhead per message: the (longest) header, or 1 for
    /// the delimiter.
    #[inline]
    pub fn max_overhead(&self) -> usize {
        self.overhead
    }

    /// Bytes a frame with a payload of `payload_len` bytes takes on the wire, or `None` if it is
    /// over the maximum.
    #[inline]
    pub fn frame_len(&self, payload_len: usize) -> Option<usize> {
        if payload_len > self.max {
            return None;
        }
        let trailer = usize::from(matches!(self.framing, Framing::Delimited(_)));
        // payload_len <= max <= isize::MAX - MAX_HEADER_LEN
        Some(payload_len + self.header_len(payload_len) + trailer)
    }

    /// Append one frame (header and payload, or payload and delimiter) to `dst`; returns the
    /// number of bytes appended.
    ///
    /// Errors, leaving `dst` untouched: [`FrameError::TooLarge`] if the payload is over the
    /// maximum, [`FrameError::DelimiterInPayload`] if it contains the delimiter.
    #[inline]
    pub fn encode(&self, payload: &[u8], dst: &mut BytesMut) -> Result<usize, FrameError> {
        let frame = self.prepare(payload)?;
        dst.reserve(frame.len());
        dst.extend_from_slice(frame.header());
        dst.extend_from_slice(payload);
        dst.extend_from_slice(frame.trailer());
        Ok(frame.len())
    }

    /// Checks `payload` and computes its frame without writing it anywhere: for callers that
    /// must know a frame's exact length before they reserve room for it (see
    /// [`Frame::write_to`]).
    ///
    /// ```
    /// use buffstreams_frame::{Codec, Framing};
    /// let codec = Codec::new(Framing::U16Be, 1024)?;
    /// let frame = codec.prepare(b"abc")?;
    /// let mut out = vec![0u8; frame.len()];
    /// frame.write_to(&mut out);
    /// assert_eq!(out, [0, 3, b'a', b'b', b'c']);
    /// # Ok::<(), buffstreams_frame::FrameError>(())
    /// ```
    #[inline]
    pub fn prepare<'a>(&self, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        let mut header = [0u8; MAX_HEADER_LEN];
        let header_len = self.encode_header(payload.len(), &mut header)?;
        let mut trailer = [0u8; 1];
        let trailer_len = match self.framing {
            Framing::Delimited(delimiter) => {
                if delimited::find(payload, delimiter).is_some() {
                    return Err(FrameError::DelimiterInPayload { delimiter });
                }
                trailer[0] = delimiter;
                1
            }
            _ => 0,
        };
        Ok(Frame {
            header,
            header_len: header_len as u8,
            trailer,
            trailer_len: trailer_len as u8,
            payload,
        })
    }

    /// Write the header for a payload of `len` bytes into `out`; returns its length (0 for
    /// [`Framing::Delimited`], whose delimiter follows the payload and which cannot check the
    /// payload for delimiters here).
    ///
    /// Errors with [`FrameError::TooLarge`] if `len` is over the maximum.
    #[inline]
    pub fn encode_header(
        &self,
        len: usize,
        out: &mut [u8; MAX_HEADER_LEN],
    ) -> Result<usize, FrameError> {
        self.check_len(len)?;
        Ok(self.write_header(len, out))
    }

    /// For a fixed-width framing, what a writer's hot loop needs to frame without dispatching
    /// on the framing per message; `None` for the others. Plumbing for `buffstreams`'
    /// `BufferedWriter`, not a stable API.
    #[doc(hidden)]
    #[inline]
    pub fn fixed_header(&self) -> Option<FixedHeader> {
        self.framing.fixed().map(|fixed| FixedHeader {
            fixed,
            max: self.max,
        })
    }

    /// Length of the header of a `len`-byte payload (checked against the maximum by the caller):
    /// 0 for [`Framing::Delimited`].
    #[inline]
    pub(crate) fn header_len(&self, len: usize) -> usize {
        match self.framing {
            Framing::Varint => varint::encoded_len(len as u64),
            Framing::Delimited(_) => 0,
            _ => self.overhead,
        }
    }

    /// Writes the header of a `len`-byte payload (checked against the maximum by the caller)
    /// into the front of `out`, which has room for [`header_len`](Codec::header_len) bytes;
    /// returns that length. Each fixed width is one store of its own size, with no staging copy.
    #[inline]
    pub(crate) fn write_header(&self, len: usize, out: &mut [u8]) -> usize {
        match self.framing {
            Framing::Varint => varint::encode_into(len as u64, out),
            Framing::BuffStreams => buffstreams::write(len, self.overhead, out),
            Framing::Delimited(_) => 0,
            _ => match self.framing.fixed() {
                Some(fixed) => fixed.write(len as u64, out),
                None => 0,
            },
        }
    }

    /// Checks that a payload of `len` bytes is within the maximum message size, as
    /// [`encode`](Codec::encode) does before writing anything: for a caller that frames into its
    /// own memory and wants to refuse an oversized message before reserving room for it.
    ///
    /// Errors with [`FrameError::TooLarge`] if `len` is over the maximum.
    ///
    /// ```
    /// use buffstreams_frame::{Codec, FrameError, Framing};
    /// let codec = Codec::new(Framing::U16Be, 100)?;
    /// assert!(codec.check_len(100).is_ok());
    /// assert_eq!(codec.check_len(101), Err(FrameError::TooLarge { len: 101, max: 100 }));
    /// # Ok::<(), FrameError>(())
    /// ```
    #[inline]
    pub fn check_len(&self, len: usize) -> Result<(), FrameError> {
        if len > self.max {
            return Err(FrameError::TooLarge {
                len: len as u64,
                max: self.max,
            });
        }
        Ok(())
    }

    /// Inspect the front of `buf`: a complete frame, an incomplete one, or a protocol error.
    ///
    /// Errors are reported as soon as the bytes proving them are in `buf`: a length over the
    /// maximum as soon as the header is, a varint as soon as it has 10 bytes with the continuation
    /// bit or overflows 64 bits, a delimiter-terminated message as soon as `max + 1` bytes without
    /// a delimiter are there.
    #[inline]
    pub fn parse(&self, buf: &[u8]) -> Result<Parse, FrameError> {
        if let Framing::Delimited(delimiter) = self.framing {
            return Ok(match delimited::scan(buf, delimiter, 0, self.max)? {
                Some(i) => Parse::Frame {
                    payload_start: 0,
                    payload_len: i,
                    frame_len: i + 1,
                },
                None => Parse::Incomplete,
            });
        }
        Ok(match self.head(buf)? {
            Head::Known {
                header_len,
                payload_len,
            } if buf.len().saturating_sub(header_len) >= payload_len => Parse::Frame {
                payload_start: header_len,
                payload_len,
                frame_len: header_len + payload_len,
            },
            _ => Parse::Incomplete,
        })
    }

    /// Remove one complete frame from the front of `src` and return its payload (without
    /// copying), or `Ok(None)` if `src` does not hold a complete frame yet, in which case room for
    /// the rest of the frame is reserved in `src` once its header is known.
    ///
    /// For [`Framing::Delimited`] every call scans `src` from its start again; to read a stream
    /// in many small pieces use a [`Decoder`](crate::Decoder), which does not.
    pub fn decode_from(&self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.parse(src)? {
            Parse::Frame {
                payload_start,
                payload_len,
                frame_len,
            } => {
                let mut frame = src.split_to(frame_len);
                frame.advance(payload_start);
                frame.truncate(payload_len);
                Ok(Some(frame.freeze()))
            }
            Parse::Incomplete => {
                if let Framing::Delimited(_) = self.framing {
                    return Ok(None);
                }
                if let Head::Known {
                    header_len,
                    payload_len,
                } = self.head(src)?
                {
                    src.reserve((header_len + payload_len).saturating_sub(src.len()));
                }
                Ok(None)
            }
        }
    }

    /// Read the length prefix at the front of `buf` (not for [`Framing::Delimited`]).
    ///
    /// Never returns [`Head::Incomplete`] for a `buf` of [`MAX_HEADER_LEN`] bytes or more, and a
    /// known header is never longer than the bytes given.
    #[inline]
    pub(crate) fn head(&self, buf: &[u8]) -> Result<Head, FrameError> {
        let len = match self.framing {
            Framing::Varint => match varint::decode(buf, varint::MAX_VARINT_LEN)? {
                Some((len, header_len)) => (len, header_len),
                None => return Ok(Head::Incomplete),
            },
            Framing::BuffStreams => match buffstreams::read(buf, self.overhead, self.max)? {
                Some(len) => (len as u64, self.overhead),
                None => return Ok(Head::Incomplete),
            },
            framing => match framing.fixed() {
                Some(fixed) => match fixed.read(buf) {
                    Some(len) => (len, fixed.len()),
                    None => return Ok(Head::Incomplete),
                },
                // Delimited: no header
                None => (0, 0),
            },
        };
        let (len, header_len) = len;
        if len > self.max as u64 {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        Ok(Head::Known {
            header_len,
            payload_len: len as usize, // <= max
        })
    }
}
