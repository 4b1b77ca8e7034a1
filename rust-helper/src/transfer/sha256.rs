//! SHA-256 (FIPS 180-4), for the digest that ends an export
//! (archive.rs). Written here rather than taken from a crate; where the CPU
//! has the SHA extensions (x86-64 `sha`), their instructions do the rounds,
//! at about the speed of a file copy.

/// The round constants: the first 32 bits of the fractional parts of the
/// cube roots of the first 64 primes.
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The initial state: the first 32 bits of the fractional parts of the
/// square roots of the first 8 primes.
const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A digest being computed: `update` with the bytes in order, then `finish`.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    /// Bytes of an incomplete block.
    pending: [u8; 64],
    pending_len: usize,
    /// Bytes hashed so far.
    length: u64,
    with_extensions: bool,
}

impl Default for Sha256 {
    fn default() -> Sha256 {
        Sha256::new()
    }
}

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256 {
            state: INITIAL,
            pending: [0; 64],
            pending_len: 0,
            length: 0,
            with_extensions: has_extensions(),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        if self.pending_len > 0 {
            let take = (64 - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < 64 {
                return;
            }
            let block = self.pending;
            self.compress(&block);
            self.pending_len = 0;
        }
        let whole = data.len() / 64 * 64;
        self.compress(&data[..whole]);
        let rest = &data[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// The digest of everything given to `update`.
    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.length.wrapping_mul(8);
        let mut tail = [0u8; 128];
        tail[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
        tail[self.pending_len] = 0x80;
        let tail_len = if self.pending_len < 56 { 64 } else { 128 };
        tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_be_bytes());
        self.compress(&tail[..tail_len]);
        let mut digest = [0u8; 32];
        for (chunk, word) in digest.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }

    /// Runs the compression function over `blocks` (whole 64-byte blocks).
    fn compress(&mut self, blocks: &[u8]) {
        if blocks.is_empty() {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.with_extensions {
            // SAFETY: the CPU has the instructions (`has_extensions`).
            unsafe { extensions::compress(&mut self.state, blocks) };
            return;
        }
        for block in blocks.chunks_exact(64) {
            compress_portable(&mut self.state, block);
        }
    }
}

/// The digest of `data`.
#[cfg(test)]
pub fn digest(data: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(data);
    hasher.finish()
}

/// A digest as lower-case hexadecimal, as `sha256sum` prints it.
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether this CPU has the SHA extensions and the SSE4.1 they are used with.
fn has_extensions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse4.1")
            && std::arch::is_x86_feature_detected!("ssse3")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One block, as FIPS 180-4 section 6.2.2 says.
fn compress_portable(state: &mut [u32; 8], block: &[u8]) {
    let mut w = [0u32; 64];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    for t in 16..64 {
        let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
        let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16].wrapping_add(s0).wrapping_add(w[t - 7]).wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for t in 0..64 {
        let big_s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let choose = (e & f) ^ (!e & g);
        let t1 = h.wrapping_add(big_s1).wrapping_add(choose).wrapping_add(K[t]).wrapping_add(w[t]);
        let big_s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let majority = (a & b) ^ (a & c) ^ (b & c);
        let t2 = big_s0.wrapping_add(majority);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (word, value) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *word = word.wrapping_add(value);
    }
}

/// The rounds on the SHA extensions. They keep the state as two vectors,
/// ABEF and CDGH (Intel's layout for sha256rnds2), and take the message
/// words four at a time, each with its four round constants added.
#[cfg(target_arch = "x86_64")]
mod extensions {
    use std::arch::x86_64::*;

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn compress(state: &mut [u32; 8], blocks: &[u8]) {
        // Byte order of each 32-bit word: the message is big-endian.
        let swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        // state as DCBA and HGFE, then rearranged to ABEF and CDGH.
        let dcba = _mm_loadu_si128(state.as_ptr().cast());
        let hgfe = _mm_loadu_si128(state.as_ptr().add(4).cast());
        let cdab = _mm_shuffle_epi32(dcba, 0xb1);
        let efgh = _mm_shuffle_epi32(hgfe, 0x1b);
        let mut abef = _mm_alignr_epi8(cdab, efgh, 8);
        let mut cdgh = _mm_blend_epi16(efgh, cdab, 0xf0);

        for block in blocks.chunks_exact(64) {
            let (abef_before, cdgh_before) = (abef, cdgh);
            let mut words = [
                _mm_shuffle_epi8(_mm_loadu_si128(block.as_ptr().cast()), swap),
                _mm_shuffle_epi8(_mm_loadu_si128(block.as_ptr().add(16).cast()), swap),
                _mm_shuffle_epi8(_mm_loadu_si128(block.as_ptr().add(32).cast()), swap),
                _mm_shuffle_epi8(_mm_loadu_si128(block.as_ptr().add(48).cast()), swap),
            ];
            for quad in 0..16 {
                let current = words[quad % 4];
                let constants = _mm_loadu_si128(super::K.as_ptr().add(quad * 4).cast());
                let with_constants = _mm_add_epi32(current, constants);
                cdgh = _mm_sha256rnds2_epu32(cdgh, abef, with_constants);
                abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(with_constants, 0x0e));
                // The schedule: the words of quad + 4 from those before.
                if quad < 12 {
                    let next = (quad + 1) % 4;
                    let after = (quad + 2) % 4;
                    let last = (quad + 3) % 4;
                    let w_minus_7 = _mm_alignr_epi8(words[last], words[after], 4);
                    let partial =
                        _mm_add_epi32(_mm_sha256msg1_epu32(current, words[next]), w_minus_7);
                    words[quad % 4] = _mm_sha256msg2_epu32(partial, words[last]);
                }
            }
            abef = _mm_add_epi32(abef, abef_before);
            cdgh = _mm_add_epi32(cdgh, cdgh_before);
        }

        // Back from ABEF and CDGH to DCBA and HGFE.
        let feba = _mm_shuffle_epi32(abef, 0x1b);
        let dchg = _mm_shuffle_epi32(cdgh, 0xb1);
        let dcba = _mm_blend_epi16(feba, dchg, 0xf0);
        let hgfe = _mm_alignr_epi8(dchg, feba, 8);
        _mm_storeu_si128(state.as_mut_ptr().cast(), dcba);
        _mm_storeu_si128(state.as_mut_ptr().add(4).cast(), hgfe);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of FIPS 180-4 (NIST's "Examples with Intermediate
    /// Values") and the empty message.
    #[test]
    fn the_standards_examples() {
        let cases: [(&[u8], &str); 3] = [
            (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(hex(&digest(message)), expected, "{message:?}");
        }
        let million_a = vec![b'a'; 1_000_000];
        assert_eq!(
            hex(&digest(&million_a)),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    /// The extensions and the portable rounds agree, whatever the pieces
    /// the bytes come in.
    #[test]
    fn both_ways_and_any_pieces_give_one_digest() {
        let data: Vec<u8> =
            (0..10_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let mut portable = Sha256::new();
        portable.with_extensions = false;
        portable.update(&data);
        let expected = portable.finish();
        for piece in [1, 3, 63, 64, 65, 1000, 10_000] {
            let mut hasher = Sha256::new();
            for chunk in data.chunks(piece) {
                hasher.update(chunk);
            }
            assert_eq!(hasher.finish(), expected, "pieces of {piece}");
        }
        for length in [55, 56, 63, 64, 119, 120] {
            let mut portable = Sha256::new();
            portable.with_extensions = false;
            portable.update(&data[..length]);
            assert_eq!(digest(&data[..length]), portable.finish(), "length {length}");
        }
    }
}
