//! Sans-I/O frame codec: how messages are delimited on the wire. The public `frame` namespace:
//! [`Codec`], [`Decoder`], [`Frame`], [`Parse`], [`AssemblyBudget`], [`MAX_HEADER_LEN`] and
//! [`varint`]; the wire format [`Framing`], [`FrameError`] and [`BudgetPolicy`], which the
//! messaging API uses too, are public at the crate root only.
//!
//! A [`Codec`] pairs a [`Framing`] (the wire format, the same on both ends) with a maximum
//! message size, which is enforced on both sides and, when decoding, *before* anything is
//! allocated for a frame. It is `Copy` and immutable:
//!
//! - [`Codec::encode`] appends a frame to a [`BytesMut`];
//! - [`Codec::parse`] inspects the front of a buffer, [`Codec::decode_from`] splits a frame off a
//!   [`BytesMut`] (tokio-util style);
//! - a [`Decoder`] takes a byte stream in chunks cut anywhere and calls back with every payload,
//!   borrowing it from the chunk when the frame lies inside one and assembling it otherwise.
//!
//! ```
//! use std::ops::ControlFlow;
//! use buffstreams::frame::{Codec, Decoder};
//! use buffstreams::Framing;
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
//! # Ok::<(), buffstreams::FrameError>(())
//! ```

// This file only declares the codec's files and what they export: each file imports the
// others by path, so no two import each other.
mod assembly;
pub(crate) mod budget;
mod buffstreams;
mod codec;
mod decoder;
mod delimited;
mod encode_with;
pub(crate) mod error;
mod fixed;
pub(crate) mod framing;
mod prepared;
pub mod varint;

pub use budget::AssemblyBudget;
pub(crate) use budget::BudgetPolicy;
pub use codec::{Codec, Parse};
pub use decoder::Decoder;
pub(crate) use error::FrameError;
pub(crate) use fixed::FixedHeader;
pub(crate) use framing::Framing;
pub use framing::MAX_HEADER_LEN;
pub use prepared::Frame;
