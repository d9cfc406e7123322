//! Message handlers: the callback type a listener or a writer's reply path calls with each
//! message, and [`HandlerErrorPolicy`], what an error it returns does. A leaf: it names only
//! the connection and error types.

use std::sync::Arc;

use crate::error::HandlerError;
use crate::stream::conn::Conn;

/// A message handler: called on the owning core with each complete payload (borrowed from the
/// kernel-filled receive buffer when the frame lies in one buffer) and the connection.
pub(crate) type MessageHandler =
    Arc<dyn Fn(&[u8], &Conn) -> Result<(), HandlerError> + Send + Sync>;

/// What to do when a message handler returns an error (a panic always closes the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandlerErrorPolicy {
    /// Log the error (a `tracing` warning) and go on with the next message. The default, as in
    /// Go BuffStreams.
    #[default]
    LogAndContinue,
    /// Close that connection; the error is its close reason.
    Close,
}
