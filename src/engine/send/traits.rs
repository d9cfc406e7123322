//! What the engine asks of the layer that owns the codec: [`FrameIndex`] finds frame boundaries
//! in queued bytes, and an [`Encoded`] frame is copied whole into send memory.

/// Finds frame boundaries in encoded bytes; supplied by the layer that owns the codec.
pub(crate) trait FrameIndex: Send + Sync {
    /// The start of the frame that contains byte `offset` of `buf` (frames start at 0).
    fn frame_start(&self, buf: &[u8], offset: usize) -> usize;

    /// The length in bytes of the first `n` frames of `buf` (all of `buf` if it holds fewer).
    fn frames_len(&self, buf: &[u8], n: u32) -> usize;
}

/// Bytes to queue whole, encoded by the layer above (a prepared frame): the engine knows no
/// codec, only how long the bytes are and how to copy them into send memory.
pub(crate) trait Encoded {
    /// Bytes it takes in the queue.
    fn len(&self) -> usize;
    /// Writes it at the start of `dst` (at least [`len`](Encoded::len) bytes); returns its length.
    fn write_to(&self, dst: &mut [u8]) -> usize;
}

/// Turns one connection's outgoing bytes into what goes on the wire (the layer above's TLS
/// session: records), on the thread that sends them, in the order they are sent. The engine
/// calls it once per chunk of send memory, before any byte of the chunk is sent.
pub(crate) trait Seal: Send {
    /// Appends the sealed form of `plain` to `wire`. An error fails the connection (its socket
    /// is shut down before anything unsealed could be sent).
    fn seal(&mut self, plain: &[u8], wire: &mut Vec<u8>) -> Result<(), crate::error::ConnError>;

    /// The connection closes cleanly once everything was sent: appends its last words (TLS
    /// `close_notify`) to `wire`; `false` if there are none.
    fn goodbye(&mut self, wire: &mut Vec<u8>) -> bool {
        let _ = wire;
        false
    }
}
