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
    fn pick_walks_cumulative_weights() {
        assert_eq!(pick(0, [0, 1]), Some(1));
        assert_eq!(pick(u32::MAX, [1, 1]), Some(1));
        assert_eq!(pick(u32::MAX / 4, [1, 1]), Some(0));
        assert_eq!(pick(5, [0, 0]), None);
    }
}
