//! Sticky percentage buckets.
//!
//! A user's bucket is a pure function of a bucketing string (by default the
//! flag key followed by the targeting key), so it never changes while those
//! stay the same: splits are sticky and ramps are monotonic. The hash is
//! MurmurHash3 x86 32-bit with seed 0, bit-exact with flagd (Go core ≥ 0.15,
//! npm `@openfeature/flagd-core` 4.x).

/// MurmurHash3 x86 32-bit, seed 0, of the UTF-8 bytes of `parts` joined with
/// no separator. Parts up to 256 bytes in total are joined on the stack, so
/// the common `flagKey + targetingKey` case does not allocate.
pub fn hash(parts: &[&str]) -> u32 {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if let [single] = parts {
        return mur3::murmurhash3_x86_32(single.as_bytes(), 0);
    }
    if total <= 64 {
        hash_joined::<64>(parts, total)
    } else if total <= 256 {
        hash_joined::<256>(parts, total)
    } else {
        mur3::murmurhash3_x86_32(parts.concat().as_bytes(), 0)
    }
}

fn hash_joined<const N: usize>(parts: &[&str], total: usize) -> u32 {
    let mut buffer = [0u8; N];
    let mut end = 0;
    for part in parts {
        buffer[end..end + part.len()].copy_from_slice(part.as_bytes());
        end += part.len();
    }
    debug_assert_eq!(end, total);
    mur3::murmurhash3_x86_32(&buffer[..end], 0)
}

/// flagd v2 bucketing: maps a hash onto `[0, total_weight)` without
/// floating point, `(h * total) >> 32`.
pub fn scale(hash: u32, total_weight: u64) -> u64 {
    (u64::from(hash) * total_weight) >> 32
}

/// Index of the bucket `value` falls into, given integer weights: the first
/// whose cumulative weight exceeds it. `None` when the weights sum to zero.
pub fn pick(hash: u32, weights: impl IntoIterator<Item = u64> + Clone) -> Option<usize> {
    let total: u64 = weights.clone().into_iter().sum();
    if total == 0 {
        return None;
    }
    let bucket = scale(hash, total);
    let mut cumulative = 0u64;
    for (index, weight) in weights.into_iter().enumerate() {
        cumulative += weight;
        if bucket < cumulative {
            return Some(index);
        }
    }
    None
}

/// MurmurHash3 x86 32-bit (seed 0) of a constant prefix followed by a
/// varying rest, with the prefix's whole 4-byte blocks hashed once: a ramp
/// hashes `flagKey/salt/` + the targeting key on every evaluation.
#[derive(Debug, Clone)]
pub struct PrefixHash {
    /// State after the prefix's whole blocks.
    h1: u32,
    /// The prefix's last 0–3 bytes, not yet a whole block, little-endian.
    carry: u32,
    carried: usize,
    prefix_len: usize,
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

fn mix_block(h1: u32, block: u32) -> u32 {
    let k = block.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h1 ^ k).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

impl PrefixHash {
    pub fn new(prefix: &str) -> PrefixHash {
        let bytes = prefix.as_bytes();
        let mut h1 = 0u32;
        let mut blocks = bytes.chunks_exact(4);
        for block in blocks.by_ref() {
            h1 = mix_block(h1, u32::from_le_bytes([block[0], block[1], block[2], block[3]]));
        }
        let rest = blocks.remainder();
        PrefixHash { h1, carry: little_endian(rest, 0), carried: rest.len(), prefix_len: bytes.len() }
    }

    /// The hash of the prefix followed by `rest`: equal to [`hash`] of both.
    /// Bytes are shifted into blocks rather than copied into buffers: for a
    /// targeting key of ten bytes the copies cost more than the mixing.
    pub fn of(&self, rest: &str) -> u32 {
        let bytes = rest.as_bytes();
        let mut h1 = self.h1;
        let mut block = self.carry;
        let mut filled = self.carried;
        let mut used = 0;
        if filled > 0 {
            while filled < 4 && used < bytes.len() {
                block |= u32::from(bytes[used]) << (8 * filled);
                filled += 1;
                used += 1;
            }
            if filled == 4 {
                h1 = mix_block(h1, block);
                (block, filled) = (0, 0);
            }
        }
        if filled == 0 {
            let mut blocks = bytes[used..].chunks_exact(4);
            for chunk in blocks.by_ref() {
                h1 = mix_block(h1, u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
            }
            let tail = blocks.remainder();
            block = little_endian(tail, 0);
            filled = tail.len();
        }
        if filled > 0 {
            h1 ^= block.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        }
        let mut h = h1 ^ (self.prefix_len + bytes.len()) as u32;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

/// Up to three bytes as a little-endian number, starting at byte `at`.
fn little_endian(bytes: &[u8], at: usize) -> u32 {
    bytes.iter().enumerate().fold(0, |value, (index, byte)| value | u32::from(*byte) << (8 * (at + index)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vectors() {
        assert_eq!(hash(&[""]), 0);
        assert_eq!(hash(&["hello"]), 0x248b_fa47);
        assert_eq!(hash(&["flagKey", "user-123"]), 0x0129_ffd7);
        assert_eq!(hash(&["flagKeyuser-123"]), 0x0129_ffd7);
        let long = "x".repeat(300);
        assert_eq!(hash(&[&long[..100], &long[100..]]), hash(&[&long]));
    }

    #[test]
    fn a_prefix_hash_is_the_hash_of_both() {
        let texts = ["", "a", "ab", "abc", "abcd", "abcde", "flag/salt/", "new-checkout/s1/", "ünïcödé/", "x1234567"];
        for prefix in texts {
            let hasher = PrefixHash::new(prefix);
            for rest in texts.iter().chain(["user-42", "user-1234567890", "0"].iter()) {
                assert_eq!(hasher.of(rest), hash(&[prefix, rest]), "{prefix:?} + {rest:?}");
            }
        }
    }

    #[test]
    fn pick_walks_cumulative_weights() {
        assert_eq!(pick(0, [0, 1]), Some(1));
        assert_eq!(pick(u32::MAX, [1, 1]), Some(1));
        assert_eq!(pick(u32::MAX / 4, [1, 1]), Some(0));
        assert_eq!(pick(5, [0, 0]), None);
    }
}
