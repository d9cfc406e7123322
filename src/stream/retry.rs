//! The one "the link is down: reconnect, then try again" loop, for every write path of a
//! stream that can reconnect (a [`Writer`](crate::Writer)'s write, batch, buffered flush,
//! flush, `try_write` and async write).

use std::sync::Arc;

use crate::engine::handle::PushError;
use crate::error::{ConnError, DialError, WriteError};
use crate::stream::outbound::Refused;

/// A link that can be brought back up.
pub(crate) trait Reconnect {
    /// Dials now if the link is down (one thread dials; the others wait for it).
    fn reconnect(&self) -> Result<(), DialError>;
    /// Starts reconnecting in the background and takes writes meanwhile; never dials on this
    /// thread.
    fn reconnect_later(&self);
}

/// What a write does when it finds the link down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnDown {
    /// Dial on this thread, then try again (a blocking write); a failed dial is the error.
    Dial,
    /// Start a background reconnect and try again once (it queues for the reconnect); a write
    /// that never waits or runs on an executor thread.
    Background,
}

/// A refusal that may mean "the link is down".
pub(crate) trait Refusal: Into<WriteError> {
    /// The link's error, if the refusal means it is down.
    fn down(&self) -> Option<&Arc<ConnError>>;
}

impl Refusal for PushError {
    fn down(&self) -> Option<&Arc<ConnError>> {
        match self {
            PushError::Down(err) => Some(err),
            _ => None,
        }
    }
}

impl Refusal for Refused {
    fn down(&self) -> Option<&Arc<ConnError>> {
        match self {
            Refused::Push(err) => err.down(),
            _ => None,
        }
    }
}

/// Runs `attempt` until it is not refused for a link that is down, reconnecting as `on_down`
/// says in between. `attempt` must not have used its input when it reports the link down, so
/// it can run again.
pub(crate) fn retry<T, E: Refusal>(
    link: &impl Reconnect,
    on_down: OnDown,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, WriteError> {
    let mut restarted = false;
    loop {
        let err = match attempt() {
            Ok(done) => return Ok(done),
            Err(err) => err,
        };
        if err.down().is_none() {
            return Err(err.into());
        }
        match on_down {
            OnDown::Dial => link.reconnect().map_err(WriteError::Reconnect)?,
            OnDown::Background if !restarted => {
                restarted = true;
                link.reconnect_later();
            }
            OnDown::Background => return Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[derive(Default)]
    struct FakeLink {
        dials: Cell<u32>,
        later: Cell<u32>,
        dial_fails: bool,
    }

    impl Reconnect for FakeLink {
        fn reconnect(&self) -> Result<(), DialError> {
            self.dials.set(self.dials.get() + 1);
            if self.dial_fails {
                return Err(DialError::RuntimeClosed);
            }
            Ok(())
        }
        fn reconnect_later(&self) {
            self.later.set(self.later.get() + 1);
        }
    }

    fn down() -> PushError {
        PushError::Down(Arc::new(ConnError::NotConnected))
    }

    #[test]
    fn a_blocking_write_dials_until_the_link_takes_it() {
        let link = FakeLink::default();
        let mut tries = 0;
        let got = retry(&link, OnDown::Dial, || {
            tries += 1;
            if tries < 3 {
                Err(down())
            } else {
                Ok(tries)
            }
        });
        assert_eq!(got.ok(), Some(3));
        assert_eq!(link.dials.get(), 2);
        assert_eq!(link.later.get(), 0);
    }

    #[test]
    fn a_failed_dial_is_the_writes_error() {
        let link = FakeLink {
            dial_fails: true,
            ..FakeLink::default()
        };
        let got = retry(&link, OnDown::Dial, || Err::<(), _>(down()));
        assert!(matches!(
            got,
            Err(WriteError::Reconnect(DialError::RuntimeClosed))
        ));
        assert_eq!(link.dials.get(), 1);
    }

    #[test]
    fn a_write_that_never_dials_restarts_the_reconnect_once() {
        let link = FakeLink::default();
        let mut tries = 0;
        let got = retry(&link, OnDown::Background, || {
            tries += 1;
            Err::<(), _>(down())
        });
        assert!(matches!(got, Err(WriteError::Failed(_))));
        assert_eq!((tries, link.later.get(), link.dials.get()), (2, 1, 0));
    }

    #[test]
    fn other_refusals_are_mapped_without_reconnecting() {
        let link = FakeLink::default();
        let full = retry(&link, OnDown::Dial, || Err::<(), _>(PushError::TimedOut));
        assert!(matches!(full, Err(WriteError::Full)));
        let closed = retry(&link, OnDown::Dial, || Err::<(), _>(PushError::Closed));
        assert!(matches!(closed, Err(WriteError::Closed)));
        let encoder = retry(&link, OnDown::Dial, || {
            Err::<(), _>(Refused::Encoder { announced: 3 })
        });
        assert!(matches!(
            encoder,
            Err(WriteError::EncodedLength { announced: 3 })
        ));
        assert_eq!(link.dials.get() + link.later.get(), 0);
    }
}
