//! Keys: opaque byte strings (conventionally `"host:port"`), and the hash that places them.

use std::hash::{BuildHasher, Hasher};

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

/// Builds [`KeyHasher`]s with a per-pool random seed. Keys come from the proxy's own backend
/// list, not from clients, so a fast multiplicative hash (FxHash's step, ~2 ns for a
/// `"host:port"`) is enough; the seed and the final mix still keep crafted collisions and
/// weak low bits out of the table.
#[derive(Debug, Clone)]
pub(crate) struct KeyHashBuilder {
    seed: u64,
}

impl KeyHashBuilder {
    pub(crate) fn new() -> Self {
        // RandomState is seeded from the OS once per thread and varies per instance.
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
        KeyHashBuilder { seed }
    }

    /// The hash of a key. Keys of up to 16 bytes (the usual `"host:port"`) take one folded
    /// 64x64->128-bit multiply of two overlapping words (foldhash's construction), longer ones
    /// the FxHash word step over every word finished with fmix64. For a given length the
    /// words determine every byte (the last word is loaded overlapping the one before), so
    /// there is no byte-by-byte tail and no copy into a buffer.
    #[inline]
    pub(crate) fn hash_key(&self, k: &[u8]) -> u64 {
        let n = k.len();
        if n <= 16 {
            let (a, b) = if n >= 8 {
                (word8(k), word8(&k[n - 8..]))
            } else if n >= 4 {
                (u64::from(word4(k)), u64::from(word4(&k[n - 4..])))
            } else if n > 0 {
                let w = u64::from(k[0]) | u64::from(k[n / 2]) << 8 | u64::from(k[n - 1]) << 16;
                (w, 0)
            } else {
                (0, 0)
            };
            let h = fold(a ^ self.seed, b ^ P1 ^ (n as u64));
            return fold(h ^ P2, self.seed ^ P3);
        }
        let mut h = KeyHasher(self.seed);
        h.add(n as u64);
        let mut i = 0;
        while i + 8 <= n {
            h.add(word8(&k[i..]));
            i += 8;
        }
        if i < n {
            h.add(word8(&k[n - 8..]));
        }
        h.finish()
    }
}

// Digits of pi (foldhash's constants): any odd, dense constants would do.
const P1: u64 = 0x243f_6a88_85a3_08d3;
const P2: u64 = 0x1319_8a2e_0370_7344;
const P3: u64 = 0xa409_3822_299f_31d1;

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

/// Key equality, inline for the usual `"host:port"` lengths (4 to 16 bytes: two overlapping
/// loads per side) instead of a call to memcmp.
#[inline]
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

impl BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.seed)
    }
}

/// FxHash's word step over 8-byte chunks, finished with murmur3's fmix64 so that every bit of
/// the result is usable (hashbrown reads the top 7 and the low bits; shards use the middle).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(K);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
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
        let b = KeyHashBuilder::new();
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

    /// Typical keys spread evenly over the 64 shards (bits 32..38) and over hashbrown's
    /// control tags (top 7 bits) and buckets (low bits).
    #[test]
    fn typical_keys_spread_evenly() {
        let b = KeyHashBuilder::new();
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
}
