//! The core's side of one connection's sends: the chunks handed to the kernel, in order, and the
//! `msghdr`/`iovec`s one `sendmsg` reads them through. Both backends drive it the same way:
//! `SendQueue::take` fills it, [`Outbox::msghdr`] points a send at every unsent byte,
//! [`Outbox::advance`] retires what the kernel took.

use std::collections::VecDeque;

use crate::engine::send::chunk::Chunk;

/// At most this many chunks (of 16 KiB, so 1 MiB) go into one `sendmsg`.
pub(crate) const MAX_CHUNKS_PER_SEND: usize = 64;

/// What one send reads: see [`Outbox::span`].
pub(crate) enum Span {
    /// `len` bytes from one chunk.
    One(*const u8, usize),
    /// The iovecs of a message header, over several chunks.
    Many(*const libc::msghdr),
}

/// See the module docs. The memory a send reads (the chunks, the `iovec` array, the `msghdr`)
/// is heap memory owned here: it does not move when the outbox (or the slot holding it) moves,
/// and it is only changed by `msghdr`/`advance`/`take_all`, which the drivers call only when no
/// send from it is in flight.
pub(crate) struct Outbox {
    chunks: VecDeque<Chunk>,
    iov: Vec<libc::iovec>,
    msg: Box<libc::msghdr>,
}

impl Default for Outbox {
    fn default() -> Outbox {
        Outbox::new()
    }
}

impl Outbox {
    /// An empty outbox.
    pub(crate) fn new() -> Outbox {
        Outbox {
            chunks: VecDeque::new(),
            iov: Vec::new(),
            // SAFETY: msghdr is plain C data (pointers, lengths, flags); all-zero is its
            // documented "no name, no iovecs, no control data" value.
            msg: Box::new(unsafe { std::mem::zeroed() }),
        }
    }

    /// Whether nothing is waiting to be sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Where `SendQueue::take` appends.
    pub(crate) fn chunks_mut(&mut self) -> &mut VecDeque<Chunk> {
        &mut self.chunks
    }

    /// Bytes not yet taken by the kernel (used by tests).
    #[cfg(test)]
    pub(crate) fn unsent_len(&self) -> usize {
        self.chunks.iter().map(|c| c.unsent().len()).sum()
    }

    /// Points the message header at every unsent byte (at most [`MAX_CHUNKS_PER_SEND`] chunks)
    /// and returns it, for one `sendmsg`. The pointer stays valid, and what it points at
    /// unchanged, until the next call of a `&mut self` method.
    pub(crate) fn msghdr(&mut self) -> *const libc::msghdr {
        self.iov.clear();
        for chunk in self.chunks.iter().take(MAX_CHUNKS_PER_SEND) {
            let unsent = chunk.unsent();
            if !unsent.is_empty() {
                self.iov.push(libc::iovec {
                    iov_base: unsent.as_ptr() as *mut libc::c_void,
                    iov_len: unsent.len(),
                });
            }
        }
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = self.iov.len() as _;
        &*self.msg
    }

    /// Points a send at every unsent byte (at most [`MAX_CHUNKS_PER_SEND`] chunks): one
    /// contiguous span when a single chunk has unsent bytes (a plain `send`, which the kernel
    /// sets up for less than a `sendmsg`), else the message header of [`Outbox::msghdr`]. What
    /// it points at stays valid and unchanged until the next call of a `&mut self` method.
    pub(crate) fn span(&mut self) -> Span {
        let msg = self.msghdr();
        match self.iov.as_slice() {
            [one] => Span::One(one.iov_base as *const u8, one.iov_len),
            _ => Span::Many(msg),
        }
    }

    /// Bytes the last [`msghdr`](Outbox::msghdr) (or [`span`](Outbox::span)) covers.
    pub(crate) fn span_len(&self) -> usize {
        self.iov.iter().map(|v| v.iov_len).sum()
    }

    /// The kernel took `n` more bytes: chunks it took in full move to `done`.
    pub(crate) fn advance(&mut self, mut n: usize, done: &mut Vec<Chunk>) {
        while let Some(front) = self.chunks.front_mut() {
            let take = n.min(front.unsent().len());
            front.advance(take);
            n -= take;
            if !front.is_sent() {
                break;
            }
            if let Some(chunk) = self.chunks.pop_front() {
                done.push(chunk);
            }
        }
    }

    /// Everything still held (the connection is gone), in order.
    pub(crate) fn take_all(&mut self) -> VecDeque<Chunk> {
        self.iov.clear();
        std::mem::take(&mut self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(bytes: &[u8]) -> Chunk {
        let mut c = Chunk::with_capacity(bytes.len().max(1));
        c.spare(bytes.len()).copy_from_slice(bytes);
        c.commit(bytes.len());
        c
    }

    #[test]
    fn iovecs_cover_every_unsent_byte_across_partial_sends() {
        let mut out = Outbox::new();
        out.chunks_mut().push_back(chunk(b"abcd"));
        out.chunks_mut().push_back(chunk(b"efg"));
        let msg = out.msghdr();
        // SAFETY: `msg` points into `out`, which is not touched until the reads below end.
        let (iovs, n) = unsafe { ((*msg).msg_iov, (*msg).msg_iovlen) };
        assert_eq!(n, 2);
        // SAFETY: as above; the array has `n` entries.
        let lens: Vec<usize> = (0..n).map(|i| unsafe { (*iovs.add(i)).iov_len }).collect();
        assert_eq!(lens, [4, 3]);
        let mut done = Vec::new();
        out.advance(5, &mut done);
        assert_eq!(done.len(), 1);
        assert_eq!(out.unsent_len(), 2);
        let msg = out.msghdr();
        // SAFETY: as above.
        let first = unsafe { &*(*msg).msg_iov };
        // SAFETY: the iovec points at the unsent tail of a chunk owned by `out`.
        let bytes =
            unsafe { std::slice::from_raw_parts(first.iov_base as *const u8, first.iov_len) };
        assert_eq!(bytes, b"fg");
        out.advance(2, &mut done);
        assert!(out.is_empty());
        assert_eq!(done.len(), 2);
    }
}
