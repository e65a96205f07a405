//! Hash maps keyed by COCO ids.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Multiplicative hashing for integer ids: the default SipHash costs more than the rest of the
/// per-detection bookkeeping, and ids are not attacker-controlled keys here.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
        }
    }
    fn write_i64(&mut self, v: i64) {
        self.0 = (v as u64 ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95).rotate_left(29);
    }
}

pub(crate) type IdMap<V> = HashMap<i64, V, BuildHasherDefault<IdHasher>>;

/// A set of ids with [`IdHasher`].
pub(crate) type IdSet = HashSet<i64, BuildHasherDefault<IdHasher>>;
