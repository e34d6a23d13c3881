//! Equality of short strings, inline.
//!
//! Rules compare short strings all the time — context keys, `in` lists of
//! country codes, plan names, a variant's name, an e-mail's domain — and
//! for those a call into the C library's `memcmp` costs more than the
//! comparison. Lengths first, then eight bytes at a time.

/// Whether `a` and `b` hold the same bytes.
#[inline]
pub(crate) fn same(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// Whether `text` ends with `suffix` (`starts` false) or starts with it.
#[inline]
pub(crate) fn has_affix(text: &str, affix: &str, starts: bool) -> bool {
    let (text, affix) = (text.as_bytes(), affix.as_bytes());
    if affix.len() > text.len() {
        return false;
    }
    let part = if starts { &text[..affix.len()] } else { &text[text.len() - affix.len()..] };
    same_bytes(part, affix)
}

#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a, mut b) = (a, b);
    while let (Some((x, rest_a)), Some((y, rest_b))) = (a.split_first_chunk::<8>(), b.split_first_chunk::<8>()) {
        if x != y {
            return false;
        }
        (a, b) = (rest_a, rest_b);
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_and_affixes_agree_with_the_standard_library() {
        let words = ["", "a", "ab", "NO", "SE", "enterprise", "free", "someone@example.com", "@example.com", "ünï"];
        for a in words {
            for b in words {
                assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
                assert_eq!(has_affix(a, b, true), a.starts_with(b), "{a:?} {b:?}");
                assert_eq!(has_affix(a, b, false), a.ends_with(b), "{a:?} {b:?}");
            }
        }
        let long = "x".repeat(37);
        assert!(same(&long, &"x".repeat(37)) && !same(&long, &format!("{}y", "x".repeat(36))));
    }
}
