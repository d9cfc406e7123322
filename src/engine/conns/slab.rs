//! Generation-numbered slots: a key names one occupant of one slot, so a key kept after its
//! occupant left finds nothing, even once the slot holds another.

/// Bits of a slot's generation carried in a key (a key fits in 56 bits, for tokens and queues
/// that keep a few bits of their own).
const GEN_BITS: u32 = 24;
const GEN_MASK: u32 = (1 << GEN_BITS) - 1;

/// Names one connection of a core's table: its slot and the slot's generation when it joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey {
    slot: u32,
    gen: u32,
}

impl ConnKey {
    /// The key as 56 bits (generation above the slot), for tokens and queues.
    #[inline]
    pub(crate) fn to_u64(self) -> u64 {
        (u64::from(self.gen) << 32) | u64::from(self.slot)
    }

    /// The key [`ConnKey::to_u64`] gave (higher bits are ignored).
    #[inline]
    pub(crate) fn from_u64(bits: u64) -> ConnKey {
        ConnKey {
            slot: bits as u32,
            gen: (bits >> 32) as u32 & GEN_MASK,
        }
    }

    /// The slot's index.
    #[cfg(test)]
    pub(crate) fn slot(self) -> u32 {
        self.slot
    }
}

struct Slot<T> {
    gen: u32,
    value: Option<T>,
}

/// Values in generation-numbered slots; freed slots are reused, each time with a new
/// generation.
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value`; returns its key.
    pub(crate) fn insert(&mut self, value: T) -> ConnKey {
        self.len += 1;
        match self.free.pop() {
            Some(slot) => {
                let entry = &mut self.slots[slot as usize];
                entry.value = Some(value);
                ConnKey {
                    slot,
                    gen: entry.gen,
                }
            }
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    value: Some(value),
                });
                ConnKey {
                    slot: (self.slots.len() - 1) as u32,
                    gen: 0,
                }
            }
        }
    }

    /// The value `key` names, if it is still there.
    #[inline]
    pub(crate) fn get(&self, key: ConnKey) -> Option<&T> {
        match self.slots.get(key.slot as usize) {
            Some(entry) if entry.gen == key.gen => entry.value.as_ref(),
            _ => None,
        }
    }

    /// The value `key` names, if it is still there.
    #[inline]
    pub(crate) fn get_mut(&mut self, key: ConnKey) -> Option<&mut T> {
        match self.slots.get_mut(key.slot as usize) {
            Some(entry) if entry.gen == key.gen => entry.value.as_mut(),
            _ => None,
        }
    }

    /// Takes the value `key` names out; its slot gets a new generation and is free again.
    pub(crate) fn remove(&mut self, key: ConnKey) -> Option<T> {
        let entry = self.slots.get_mut(key.slot as usize)?;
        if entry.gen != key.gen {
            return None;
        }
        let value = entry.value.take()?;
        entry.gen = (entry.gen + 1) & GEN_MASK;
        self.free.push(key.slot);
        self.len -= 1;
        Some(value)
    }

    /// The keys of every value (a snapshot: the table may change while they are used).
    pub(crate) fn keys(&self) -> Vec<ConnKey> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.value.is_some())
            .map(|(slot, entry)| ConnKey {
                slot: slot as u32,
                gen: entry.gen,
            })
            .collect()
    }

    /// The values, with their keys.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ConnKey, &T)> {
        self.slots.iter().enumerate().filter_map(|(slot, entry)| {
            entry.value.as_ref().map(|value| {
                (
                    ConnKey {
                        slot: slot as u32,
                        gen: entry.gen,
                    },
                    value,
                )
            })
        })
    }

    /// How many values there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_key_misses_the_reused_slot() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b");
        assert_eq!(a.slot(), b.slot(), "the slot is reused");
        assert_ne!(a, b);
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.remove(a), None, "a stale key removes nothing");
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(ConnKey::from_u64(b.to_u64()), b);
        assert_eq!(slab.keys(), [b]);
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn generations_wrap_within_their_bits() {
        let mut slab = Slab::default();
        let mut key = slab.insert(0u32);
        for i in 1..=(GEN_MASK + 2) {
            slab.remove(key);
            key = slab.insert(i);
            assert!(
                key.to_u64() < 1 << 56,
                "fits beside an 8-bit operation code"
            );
            assert_eq!(ConnKey::from_u64(key.to_u64()), key);
        }
        assert_eq!(key.gen, 1, "wrapped around");
    }
}
