//! FNV-1a hashing for the maps looked up on every request with short keys
//! that come from the program, not from requests (type, flow and step
//! names, step identities): SipHash's set-up costs more than such a
//! lookup, and without outside keys hash flooding is not a concern.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// FNV-1a, 64 bits.
#[derive(Default)]
pub struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A `HashMap` hashed with [`Fnv`]: only for keys that requests cannot choose.
pub type FnvHashMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// A `HashSet` hashed with [`Fnv`]: only for keys that requests cannot choose.
pub type FnvHashSet<K> = std::collections::HashSet<K, BuildHasherDefault<Fnv>>;
