//! # buffstreams-frame
//!
//! The sans-I/O frame codec of [buffstreams](https://docs.rs/buffstreams): how length-prefixed
//! (or delimited) messages are laid out on the wire, encoded and decoded without any I/O, so any
//! transport (an io_uring stack, tokio, a plain `std::net::TcpStream`) can use it. It depends on
//! `bytes` only (and `libc` with the default `mmap` feature); `buffstreams` re-exports it as
//! `buffstreams::frame`.
//!
//! Its items: [`Codec`], [`Decoder`], [`Frame`], [`Parse`], [`AssemblyBudget`] with its
//! [`BudgetPolicy`], [`MAX_HEADER_LEN`], [`varint`], the wire format [`Framing`] and the error
//! [`FrameError`] (the last three are also at the root of `buffstreams`, whose messaging API
//! uses them).
//!
//! ## Cargo features
//!
//! - `mmap` (default): a frame assembled from many chunks moves, past 128 KiB, to an anonymous
//!   memory mapping of its own (`mmap`/`mremap`, through `libc`), unmapped as soon as it is
//!   delivered, so its memory goes back to the system whatever the allocator keeps. Without it
//!   (`default-features = false`), frames are assembled in a `Vec` of the same sizes, and the
//!   crate depends on `bytes` alone.
//!
//! A [`Codec`] pairs a [`Framing`] (the wire format, the same on both ends) with a maximum
//! message size, which is enforced on both sides and, when decoding, *before* anything is
//! allocated for a frame. It is `Copy` and immutable:
//!
//! - [`Codec::encode`] appends a frame to a [`BytesMut`](bytes::BytesMut);
//! - [`Codec::parse`] inspects the front of a buffer, [`Codec::decode_from`] splits a frame off a
//!   [`BytesMut`](bytes::BytesMut) (tokio-util style);
//! - a [`Decoder`] takes a byte stream in chunks cut anywhere and calls back with every payload,
//!   borrowing it from the chunk when the frame lies inside one and assembling it otherwise.
//!
//! ## Wire layouts
//!
//! Every layout below frames the 5-byte message `hello` (`68 65 6c 6c 6f`). In every framing
//! with a length, the length counts the payload only, never the header, and a length above the
//! codec's maximum is refused from the header alone, before anything is allocated.
//!
//! ### Fixed-width lengths: `U16Be`, `U16Le`, `U32Be` (the default), `U32Le`, `U64Be`, `U64Le`
//!
//! A length of 2, 4 or 8 bytes, big- or little-endian, then the payload. [`Framing::U32Be`] is
//! the default, and the same as tokio-util's `LengthDelimitedCodec` default.
//!
//! ```text
//! U32Be: 9 bytes
//! +-- len: u32, big-endian --+--------- payload ---------+
//! |      00 00 00 05         |  68 65 6c 6c 6f  "hello"  |
//! +--------------------------+---------------------------+
//!
//! U32Le: 9 bytes
//! +-- len: u32, little-endian --+--------- payload ---------+
//! |        05 00 00 00          |  68 65 6c 6c 6f  "hello"  |
//! +-----------------------------+---------------------------+
//!
//! U16Be: 7 bytes                      U16Le: 7 bytes
//! +- len: u16 -+---- payload ----+    +- len: u16 -+---- payload ----+
//! |   00 05    | 68 65 6c 6c 6f  |    |   05 00    | 68 65 6c 6c 6f  |
//! +------------+-----------------+    +------------+-----------------+
//!
//! U64Be: 13 bytes
//! +------ len: u64, big-endian ------+---- payload ----+
//! |     00 00 00 00 00 00 00 05      | 68 65 6c 6c 6f  |
//! +----------------------------------+-----------------+
//!
//! U64Le: 13 bytes
//! +---- len: u64, little-endian -----+---- payload ----+
//! |     05 00 00 00 00 00 00 00      | 68 65 6c 6c 6f  |
//! +----------------------------------+-----------------+
//! ```
//!
//! `U16*` carries at most 65 535, `U32*` at most `u32::MAX` ([`Framing::largest_len`]).
//!
//! ### `Varint`: the protobuf "delimited" convention
//!
//! The length as an unsigned LEB128 varint (1 to 10 bytes): 7 bits a byte, least significant
//! group first, the high bit set on every byte but the last. The same bytes as prost's
//! `encode_length_delimited`, Java's `writeDelimitedTo` and Python's
//! `serialize_length_prefixed`.
//!
//! ```text
//! Varint, "hello": 6 bytes
//! +- len: varint -+---- payload ----+
//! |      05       | 68 65 6c 6c 6f  |
//! +---------------+-----------------+
//!
//! Varint, a 300-byte payload: 2 + 300 bytes
//! +- len: varint -+------- payload -------+
//! |     ac 02     |   300 bytes ...       |
//! +---------------+-----------------------+
//!   ac = 1 0101100   (more follows; low 7 bits 0x2c = 44)
//!   02 = 0 0000010   (last; 2 << 7 = 256)     256 + 44 = 300
//! ```
//!
//! Non-minimal encodings (`80 00` for 0) are accepted, as protobuf does. A varint that does not
//! end within 10 bytes, or overflows a `u64`, is an error.
//!
//! ### `BuffStreams`: the Go BuffStreams 2.x header
//!
//! For a maximum message size `M` (0 means 4096, Go's default), every frame starts with a
//! header of `H = ceil(bitlen(M) / 8) + 1` bytes: the payload length zigzag-encoded (Go's
//! `binary.PutVarint`: `zigzag(n) = 2n` for `n >= 0`) as a LEB128 varint, then zero bytes up to
//! `H`. `H` depends on `M`, so both ends must use the same maximum (the Go side's
//! `MaxMessageSize`): `M` = 4096 or 65 535 gives `H` = 3, `M` = 1 MiB gives `H` = 4.
//!
//! ```text
//! BuffStreams, M = 4096 (H = 3), "hello": 8 bytes
//! +--------- header: H = 3 bytes ---------+---- payload ----+
//! | 0a             | 00 00                | 68 65 6c 6c 6f  |
//! | zigzag(5) = 10 | zero padding to H    |                 |
//! +----------------+----------------------+-----------------+
//!
//! BuffStreams, M = 4096, a 300-byte payload: 3 + 300 bytes
//! +--------- header: H = 3 bytes ---------+---- payload ----+
//! | d8 04                    | 00         |  300 bytes ...  |
//! | zigzag(300) = 600        | padding    |                 |
//! +--------------------------+------------+-----------------+
//! ```
//!
//! The Go reader trusts the header; this one rejects a negative length, a length above `M`, a
//! varint that does not end within `H` bytes and non-zero padding.
//!
//! ### `Delimited(b)`: a terminating byte
//!
//! No header: the payload, then the delimiter byte `b`, which the payload must not contain (a
//! payload that does is refused on write). The delimiter is not part of the message.
//!
//! ```text
//! Delimited(b'\n'), "hello": 6 bytes
//! +---- payload ----+- delimiter -+
//! | 68 65 6c 6c 6f  |     0a      |
//! +-----------------+-------------+
//! ```
//!
//! More than the maximum without a delimiter is an error.
//!
//! ## Example
//!
//! ```
//! use std::ops::ControlFlow;
//! use buffstreams_frame::{Codec, Decoder, Framing};
//! use bytes::BytesMut;
//!
//! let codec = Codec::new(Framing::Varint, 1024)?;
//! let mut wire = BytesMut::new();
//! for msg in [&b"hello"[..], b"", b"world"] {
//!     codec.encode(msg, &mut wire)?;
//! }
//! assert_eq!(&wire[..7], b"\x05hello\x00");
//!
//! // Feed the stream in two chunks cut inside the last frame.
//! let mut decoder = Decoder::new(codec);
//! let mut got = Vec::new();
//! for chunk in [&wire[..9], &wire[9..]] {
//!     decoder.decode(chunk, |payload| {
//!         got.push(payload.to_vec());
//!         ControlFlow::Continue(())
//!     })?;
//! }
//! decoder.finish()?;
//! assert_eq!(got, [&b"hello"[..], b"", b"world"]);
//!
//! // Oversized lengths are rejected from the header alone.
//! let mut decoder = Decoder::new(Codec::new(Framing::U32Be, 1024)?);
//! assert!(decoder.decode(&[0, 0, 4, 1], |_| ControlFlow::Continue(())).is_err());
//! # Ok::<(), buffstreams_frame::FrameError>(())
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

// This file only declares the codec's files and what they export: each file imports the
// others by path, so no two import each other.
mod assembly;
mod budget;
mod buffstreams;
mod codec;
mod decoder;
mod delimited;
mod encode_with;
mod error;
mod fixed;
mod framing;
// Shared with buffstreams' io_uring receive ring: internal plumbing, not a stable API.
#[cfg(feature = "mmap")]
#[doc(hidden)]
pub mod mapping;
mod prepared;
pub mod varint;

pub use budget::{AssemblyBudget, BudgetPolicy};
pub use codec::{Codec, Parse};
pub use decoder::Decoder;
pub use error::FrameError;
#[doc(hidden)]
pub use fixed::FixedHeader;
pub use framing::{Framing, MAX_HEADER_LEN};
pub use prepared::Frame;

/// The README's example, compiled as a doc test so it cannot go stale.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
