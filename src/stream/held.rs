//! Bytes a stopped connection received but could not decode yet, paid for from the listener's
//! budget.
//!
//! When reading stops (the channel is full, or the budget cannot cover the next frame), the rest
//! of the chunk that stopped it and whatever the kernel had already delivered wait here, each
//! chunk at its exact size. They are counted in the listener's budget
//! ([`AssemblyBudget::charge`]), whose pressure then keeps every connection's receives small
//! (see `engine::conns::credit`), and returned as they are decoded, and all at once when the
//! session goes.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::frame::AssemblyBudget;

/// Received bytes waiting for a stopped session (see the module docs).
#[derive(Default)]
pub(super) struct Held {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the first chunk already decoded.
    head: usize,
    /// Bytes of `chunks` charged to `budget`.
    charged: usize,
    budget: Option<Arc<AssemblyBudget>>,
}

impl Held {
    pub(super) fn new(budget: Option<Arc<AssemblyBudget>>) -> Held {
        Held {
            chunks: VecDeque::new(),
            head: 0,
            charged: 0,
            budget,
        }
    }

    /// The listener's budget, if it has one.
    pub(super) fn budget(&self) -> Option<&AssemblyBudget> {
        self.budget.as_deref()
    }

    /// Keeps a copy of `bytes` (if any), charging them to the budget.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(budget) = &self.budget {
            budget.charge(bytes.len());
        }
        self.charged += bytes.len();
        self.chunks.push_back(bytes.to_vec());
    }

    /// The bytes not decoded yet of the first chunk, if any.
    pub(super) fn front(&self) -> Option<&[u8]> {
        self.chunks
            .front()
            .map(|chunk| chunk.get(self.head..).unwrap_or_default())
    }

    /// `used` more bytes of the first chunk were decoded; a finished chunk goes, and its bytes
    /// go back to the budget.
    pub(super) fn consume(&mut self, used: usize) {
        let Some(len) = self.chunks.front().map(Vec::len) else {
            return;
        };
        self.head += used;
        if self.head >= len {
            self.chunks.pop_front();
            self.head = 0;
            self.uncharge(len);
        }
    }

    /// Bytes held now, decoded ones of the first chunk included.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.charged
    }

    fn uncharge(&mut self, bytes: usize) {
        let bytes = bytes.min(self.charged);
        self.charged -= bytes;
        if let Some(budget) = &self.budget {
            budget.uncharge(bytes);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.uncharge(self.charged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_are_counted_and_returned_as_decoded_or_dropped() {
        let budget = Arc::new(AssemblyBudget::new(100));
        let mut held = Held::new(Some(budget.clone()));
        held.push(&[1; 80]);
        held.push(&[]);
        held.push(&[2; 50]);
        assert_eq!((held.bytes(), budget.held(), budget.used()), (130, 130, 0));
        assert!(budget.under_pressure());
        assert_eq!(held.front(), Some(&[1u8; 80][..]));
        held.consume(30);
        assert_eq!(
            (held.front().map(<[u8]>::len), budget.held()),
            (Some(50), 130)
        );
        held.consume(50);
        assert_eq!((held.front(), budget.held()), (Some(&[2u8; 50][..]), 50));
        drop(held);
        assert_eq!(budget.held(), 0);
    }
}
