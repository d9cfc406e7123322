//! Receive credit: how many bytes the kernel may hand one connection before the core has looked
//! at them.
//!
//! Bytes handed over are ours to keep: when a connection stops reading (its channel is full,
//! or the listener's budget cannot cover its next frame), whatever the kernel had already
//! delivered waits in its session. On io_uring a multishot receive keeps delivering until its
//! cancel lands, which without a limit could be the core's whole receive ring per stop. So
//! every receive is bounded by the connection's credit: a multishot receive armed with it as
//! its byte limit (Linux 6.17+), an epoll `recv` of at most that many bytes.
//!
//! The credit starts small and doubles each time a receive used all of it with the connection
//! still reading (a slow start), up to [`MAX_RECV_CREDIT`]; past that the receive has no limit
//! of the engine's own (re-arming a multishot receive every 256 KiB costs small messages much
//! of the receive path's throughput; measured: see docs/benchmarks.md, 'receive credit'). A stop puts it back to
//! [`MIN_RECV_CREDIT`]. A connection that has not streamed, or has just stopped, can therefore
//! be handed only a few KiB before the core sees its data. Its session may ask for less
//! ([`Session::recv_credit`]): a listener whose budget is under pressure limits each connection
//! to the frame it is already assembling, or [`MIN_RECV_CREDIT`]. Receives armed before the
//! pressure started are brought within that limit at once ([`Conns::narrow_receives`], which
//! the listener's budget asks of every core when the pressure starts).
//!
//! [`Conns::narrow_receives`]: super::Conns::narrow_receives
//!
//! [`Session::recv_credit`]: crate::engine::session::Session::recv_credit

/// The credit of a connection that has just connected or stopped.
pub(crate) const MIN_RECV_CREDIT: u32 = 4 * 1024;

/// The most credit a streaming connection grows to.
pub(crate) const MAX_RECV_CREDIT: u32 = 256 * 1024;

/// The credit of a connection that used up [`MAX_RECV_CREDIT`] still reading: no limit of the
/// engine's own (its session's cap still applies).
pub(crate) const UNLIMITED: u32 = u32::MAX;

/// One connection's receive credit (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecvCredit(u32);

impl Default for RecvCredit {
    fn default() -> RecvCredit {
        RecvCredit(MIN_RECV_CREDIT)
    }
}

impl RecvCredit {
    /// The credit, capped by what the session asks for (never below [`MIN_RECV_CREDIT`]).
    pub(crate) fn bytes(self, session_cap: Option<usize>) -> u32 {
        match session_cap {
            Some(cap) => {
                let cap = u32::try_from(cap).unwrap_or(u32::MAX).max(MIN_RECV_CREDIT);
                self.0.min(cap)
            }
            None => self.0,
        }
    }

    /// A receive used all of its credit and the connection reads on: double it, and past
    /// [`MAX_RECV_CREDIT`] lift the limit.
    pub(crate) fn grow(&mut self) {
        self.0 = if self.0 >= MAX_RECV_CREDIT {
            UNLIMITED
        } else {
            self.0.saturating_mul(2).min(MAX_RECV_CREDIT)
        };
    }

    /// The connection stopped reading: start small again.
    pub(crate) fn reset(&mut self) {
        self.0 = MIN_RECV_CREDIT;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_small_doubles_to_the_maximum_and_resets() {
        let mut c = RecvCredit::default();
        assert_eq!(c.bytes(None), MIN_RECV_CREDIT);
        let mut seen = vec![c.bytes(None)];
        for _ in 0..10 {
            c.grow();
            seen.push(c.bytes(None));
        }
        assert_eq!(&seen[..4], [4096, 8192, 16384, 32768]);
        assert_eq!(seen[6], MAX_RECV_CREDIT);
        assert_eq!(*seen.last().unwrap(), UNLIMITED);
        // The session's cap lowers it, but never below the minimum.
        assert_eq!(c.bytes(Some(100_000)), 100_000);
        assert_eq!(c.bytes(Some(0)), MIN_RECV_CREDIT);
        assert_eq!(c.bytes(Some(usize::MAX)), UNLIMITED);
        c.reset();
        assert_eq!(c.bytes(None), MIN_RECV_CREDIT);
    }
}
