//! [`Framing`], the wire formats. Public at the crate root (the messaging API takes it), not in
//! `frame`.

use crate::fixed::Fixed;

/// Longest header any [`Framing`] writes: a 10-byte varint.
pub const MAX_HEADER_LEN: usize = 10;

/// The wire format: how each message's extent is marked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Framing {
    /// 2-byte big-endian length prefix.
    U16Be,
    /// 2-byte little-endian length prefix.
    U16Le,
    /// 4-byte big-endian length prefix: the default, the same as tokio-util's
    /// `LengthDelimitedCodec` default.
    #[default]
    U32Be,
    /// 4-byte little-endian length prefix.
    U32Le,
    /// 8-byte big-endian length prefix.
    U64Be,
    /// 8-byte little-endian length prefix.
    U64Le,
    /// Unsigned LEB128 varint length prefix: the protobuf "delimited" convention (Java
    /// `writeDelimitedTo`, prost `encode_length_delimited`, …).
    Varint,
    /// The Go BuffStreams 2.x header: `H = ceil(bitlen(M)/8) + 1` bytes (`M` the maximum message
    /// size) holding `zigzag(len)` as a LEB128 varint, zero padded. Both ends must use the same
    /// maximum message size.
    BuffStreams,
    /// Each message is terminated by this byte, which its payload must not contain.
    Delimited(u8),
}

impl Framing {
    /// The longest payload this framing's header can announce: 65 535 for `U16*`, `u32::MAX`
    /// for `U32*`; `None` when the header sets no practical bound (64-bit, varint, BuffStreams,
    /// delimited).
    ///
    /// ```
    /// use buffstreams_frame::Framing;
    /// assert_eq!(Framing::U16Le.largest_len(), Some(65_535));
    /// assert_eq!(Framing::Varint.largest_len(), None);
    /// ```
    pub const fn largest_len(self) -> Option<usize> {
        match self {
            Framing::U16Be | Framing::U16Le => Some(u16::MAX as usize),
            Framing::U32Be | Framing::U32Le if usize::BITS > 32 => Some(u32::MAX as usize),
            _ => None,
        }
    }

    #[inline]
    pub(super) const fn fixed(self) -> Option<Fixed> {
        match self {
            Framing::U16Be => Some(Fixed::U16Be),
            Framing::U16Le => Some(Fixed::U16Le),
            Framing::U32Be => Some(Fixed::U32Be),
            Framing::U32Le => Some(Fixed::U32Le),
            Framing::U64Be => Some(Fixed::U64Be),
            Framing::U64Le => Some(Fixed::U64Le),
            Framing::Varint | Framing::BuffStreams | Framing::Delimited(_) => None,
        }
    }
}
