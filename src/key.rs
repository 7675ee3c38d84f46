//! Keys: opaque byte strings (conventionally `"host:port"`), and the hash that places them.

use std::hash::BuildHasher;

/// The longest key accepted, in bytes (without the C string's NUL).
pub const MAX_KEY_LEN: usize = 1024;

/// A validated key: 1 to [`MAX_KEY_LEN`] bytes, any bytes (UTF-8 is not required).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a>(&'a [u8]);

/// The key was empty or longer than [`MAX_KEY_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidKey;

impl std::fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a key must be 1 to {MAX_KEY_LEN} bytes")
    }
}

impl std::error::Error for InvalidKey {}

impl<'a> Key<'a> {
    /// Validates `bytes` as a key.
    pub fn new(bytes: &'a [u8]) -> Result<Self, InvalidKey> {
        if bytes.is_empty() || bytes.len() > MAX_KEY_LEN {
            Err(InvalidKey)
        } else {
            Ok(Key(bytes))
        }
    }
    /// The key's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl<'a> TryFrom<&'a str> for Key<'a> {
    type Error = InvalidKey;
    fn try_from(s: &'a str) -> Result<Self, InvalidKey> {
        Key::new(s.as_bytes())
    }
}

/// The key hash, keyed by four secret words drawn per pool, so that nobody who does not
/// know them can choose keys that collide: keys may come from the network (a forward proxy
/// keys by the request's host, a TLS proxy by SNI), and colliding keys would share one
/// shard and one probe chain. It is foldhash's construction: every word of the key is
/// combined with a secret before a folded 64x64->128-bit multiply, so no input makes a
/// multiplier zero or cancels out regardless of the secrets (the flaw of an unkeyed
/// operand, or of an xor-rotate-multiply word step whose differences cancel).
#[derive(Debug, Clone)]
pub(crate) struct KeyHasher {
    s: [u64; 4],
}

impl KeyHasher {
    pub(crate) fn new() -> Self {
        // RandomState is seeded from the OS once per thread and varies per instance.
        let r = std::collections::hash_map::RandomState::new();
        KeyHasher {
            s: [0u64, 1, 2, 3].map(|i| r.hash_one(0x5eed_0000_u64 + i) | 1),
        }
    }

    /// The hash of a key. Keys of up to 16 bytes (the usual `"host:port"`) take two folded
    /// multiplies of two overlapping words; longer ones one more per 16 bytes, chained (the
    /// order of the blocks matters). For a given length the words determine every byte (the
    /// last ones are loaded overlapping the ones before), so there is no byte-by-byte tail
    /// and no copy into a buffer; the length is mixed in at the end.
    #[inline]
    pub(crate) fn hash_key(&self, k: &[u8]) -> u64 {
        let [s0, s1, s2, s3] = self.s;
        let n = k.len();
        let acc = if n <= 16 {
            let (a, b) = if n >= 8 {
                (word8(k), word8(&k[n - 8..]))
            } else if n >= 4 {
                (u64::from(word4(k)), u64::from(word4(&k[n - 4..])))
            } else if n > 0 {
                (
                    u64::from(k[0]),
                    u64::from(k[n / 2]) << 8 | u64::from(k[n - 1]),
                )
            } else {
                (0, 0)
            };
            fold(a ^ s0, b ^ s1)
        } else {
            self.hash_long(k)
        };
        fold(acc ^ s2, (n as u64) ^ s3)
    }

    #[inline(never)]
    fn hash_long(&self, k: &[u8]) -> u64 {
        let [s0, s1, _, s3] = self.s;
        let n = k.len();
        let mut acc = s0;
        let mut i = 0;
        while i + 16 < n {
            acc = fold(word8(&k[i..]) ^ acc, word8(&k[i + 8..]) ^ s1);
            i += 16;
        }
        fold(word8(&k[n - 16..]) ^ acc, word8(&k[n - 8..]) ^ s3)
    }
}

/// The folded multiply: the high and low halves of the 128-bit product, xored.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline(always)]
fn word8(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

#[inline(always)]
fn word4(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

/// Bytes of a key kept inline in its entry (most `"host:port"` keys): no heap block of
/// their own, and no pointer to follow when the key is compared.
pub(crate) const INLINE_KEY: usize = 22;

/// A key's bytes as its entry keeps them: inline up to [`INLINE_KEY`], else on the heap
/// (24 bytes either way).
#[derive(Debug)]
pub(crate) enum KeyBytes {
    Inline(u8, [u8; INLINE_KEY]),
    Heap(Box<[u8]>),
}

impl KeyBytes {
    pub fn new(key: &[u8]) -> Self {
        match u8::try_from(key.len()) {
            Ok(n) if key.len() <= INLINE_KEY => {
                let mut b = [0; INLINE_KEY];
                b[..key.len()].copy_from_slice(key);
                KeyBytes::Inline(n, b)
            }
            _ => KeyBytes::Heap(key.into()),
        }
    }

    /// The key's length (without making the slice).
    #[inline(always)]
    pub fn len(&self) -> usize {
        match self {
            KeyBytes::Inline(n, _) => usize::from(*n),
            KeyBytes::Heap(b) => b.len(),
        }
    }
}

impl std::ops::Deref for KeyBytes {
    type Target = [u8];

    #[inline(always)]
    fn deref(&self) -> &[u8] {
        match self {
            KeyBytes::Inline(n, b) => &b[..usize::from(*n).min(INLINE_KEY)],
            KeyBytes::Heap(b) => b,
        }
    }
}

/// Key equality, inline for the usual `"host:port"` lengths (4 to 16 bytes: two overlapping
/// loads per side) instead of a call to memcmp. Always inlined: a call costs as much.
#[inline(always)]
pub(crate) fn key_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        word8(a) == word8(b) && word8(&a[n - 8..]) == word8(&b[n - 8..])
    } else if (4..8).contains(&n) {
        word4(a) == word4(b) && word4(&a[n - 4..]) == word4(&b[n - 4..])
    } else {
        a == b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bounds() {
        assert_eq!(Key::new(b""), Err(InvalidKey));
        assert!(Key::new(&[b'a'; MAX_KEY_LEN]).is_ok());
        assert_eq!(Key::new(&[b'a'; MAX_KEY_LEN + 1]), Err(InvalidKey));
        assert!(Key::new(b"\xff\xfe:80").is_ok());
    }

    #[test]
    fn hash_separates_similar_keys() {
        let b = KeyHasher::new();
        let h = |k: &[u8]| b.hash_key(k);
        assert_ne!(h(b"a:1"), h(b"a:2"));
        assert_ne!(h(b"abcdefgh"), h(b"abcdefgh\0"));
        assert_eq!(h(b"10.0.0.1:8080"), h(b"10.0.0.1:8080"));
        // Every length from 1 to 40, each byte position changed: all hashes differ.
        let mut seen = std::collections::HashSet::new();
        for n in 1..=40usize {
            let base = vec![b'k'; n];
            assert!(seen.insert(h(&base)));
            for i in 0..n {
                let mut k = base.clone();
                k[i] = b'x';
                assert!(seen.insert(h(&k)), "length {n}, byte {i}");
            }
        }
    }

    /// Typical keys spread evenly over the 64 shards (bits 32..38), the string keys'
    /// guesses (top bits) and the shard index's homes (low bits).
    #[test]
    fn typical_keys_spread_evenly() {
        let b = KeyHasher::new();
        let mut shards = [0u32; 64];
        let mut tags = [0u32; 128];
        let mut low = [0u32; 64];
        for i in 0..10_000u32 {
            let k = format!(
                "10.{}.{}.{}:{}",
                i >> 16,
                (i >> 8) & 255,
                i & 255,
                8000 + i % 7
            );
            let h = b.hash_key(k.as_bytes());
            shards[(h >> 32) as usize & 63] += 1;
            tags[(h >> 57) as usize] += 1;
            low[h as usize & 63] += 1;
        }
        // Expected 156 per shard or bucket and 78 per tag, with a spread of about 12 and 9:
        // these bounds are more than 4 standard deviations out.
        assert!(
            shards.iter().all(|&n| (100..=220).contains(&n)),
            "{shards:?}"
        );
        assert!(low.iter().all(|&n| (100..=220).contains(&n)), "{low:?}");
        assert!(tags.iter().all(|&n| (35..=125).contains(&n)), "{tags:?}");
    }

    #[test]
    fn key_bytes_hold_every_length_inline_or_on_the_heap() {
        assert_eq!(std::mem::size_of::<KeyBytes>(), 24);
        let long: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        for n in [0, 1, 7, 21, 22, 23, 64, 70_000] {
            let k = KeyBytes::new(&long[..n]);
            assert_eq!(&*k, &long[..n]);
            assert_eq!(matches!(k, KeyBytes::Inline(..)), n <= INLINE_KEY, "{n}");
        }
    }

    #[test]
    fn key_eq_matches_slice_eq() {
        let keys: Vec<Vec<u8>> = (1..=24usize)
            .flat_map(|n| {
                (0..n).map(move |i| {
                    let mut k = vec![b'a'; n];
                    k[i] = b'b';
                    k
                })
            })
            .collect();
        for a in &keys {
            for b in &keys {
                assert_eq!(key_eq(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    /// The two seed-independent collision families of the previous hash: 16-byte keys whose
    /// last word was chosen to zero an unkeyed multiplier, and long keys with cancelling bit
    /// flips in consecutive words. Keyed, they spread like random keys.
    #[test]
    fn crafted_families_do_not_collide() {
        let h = KeyHasher::new();
        let mut zero_mul = std::collections::HashSet::new();
        let p1: u64 = 0x243f_6a88_85a3_08d3;
        for i in 0..4096u64 {
            let mut k = i.to_le_bytes().to_vec();
            k.extend_from_slice(&(p1 ^ 16).to_le_bytes());
            zero_mul.insert(h.hash_key(&k));
        }
        assert_eq!(zero_mul.len(), 4096);
        let mut flips = std::collections::HashSet::new();
        for mask in 0..4096u32 {
            let mut words = [0x6b65_795f_6b65_795fu64; 15];
            for i in 0..12 {
                if mask >> i & 1 == 1 {
                    words[i] ^= 1 << 63;
                    words[i + 1] ^= 1 << 25;
                }
            }
            let k: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            flips.insert(h.hash_key(&k));
        }
        assert_eq!(flips.len(), 4096);
    }

    /// Keys equal as words but of different lengths (a word, and the same word twice) differ.
    #[test]
    fn the_length_is_mixed_in() {
        let h = KeyHasher::new();
        assert_ne!(h.hash_key(b"abcdefgh"), h.hash_key(b"abcdefghabcdefgh"));
        assert_ne!(h.hash_key(b"abcd"), h.hash_key(b"abcdabcd"));
    }
}
