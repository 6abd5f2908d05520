//! RSA PKCS#1 v1.5 signature verification: the public operation `s^e mod n` by Montgomery
//! multiplication over 64-bit limbs, then the encoding compared byte for byte.
//!
//! Only public values go in (key, signature, digest), so nothing here needs to run in
//! constant time. The general-purpose `rsa` crate's modular exponentiation allocates in its
//! inner loop and took a quarter of a millisecond per 2048-bit verification, more than
//! OpenSSL's whole verification of an image; this takes about a tenth of that. The tests
//! hold it to OpenSSL's raw RSA public operation on keys of every supported size.
//!
//! Limb arithmetic indexes and adds freely, so the crate's lints against both are lifted
//! here, and only here: every index is below the limb count `k` that [`PublicKey::new`]
//! fixes (a signature longer than `k` limbs is refused before it is read), and no u128 sum
//! overflows, since (2^64 - 1)^2 + 2 (2^64 - 1) = 2^128 - 1.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::HashAlgorithm;

/// Largest modulus accepted, in bits (the `rsa` crate's and most verifiers' bound).
const MAX_BITS: usize = 4096;
/// Public exponents accepted: odd, at least 3 and below 2^33.
const MAX_EXPONENT: u64 = (1 << 33) - 1;

/// A public key ready for the public operation.
pub(crate) struct PublicKey {
    /// Modulus, little-endian 64-bit limbs, top limb non-zero.
    n: Vec<u64>,
    /// Modulus length in bytes (the signature length PKCS#1 requires).
    len: usize,
    e: u64,
    /// -n^-1 mod 2^64.
    n0_inv: u64,
}

impl PublicKey {
    /// The key with big-endian modulus `n` and exponent `e`; `None` for a key outside the
    /// supported range: an even or over-4096-bit modulus, an exponent that is even, below 3,
    /// at least 2^33 or not below the modulus.
    pub(crate) fn new(n: &[u8], e: &[u8]) -> Option<PublicKey> {
        let n = strip(n);
        let e = strip(e);
        if n.is_empty() || n.len() * 8 > MAX_BITS + 7 || e.len() > 8 {
            return None;
        }
        let bits = n.len() * 8 - n[0].leading_zeros() as usize;
        if bits > MAX_BITS {
            return None;
        }
        let e = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        let limbs = to_limbs(n, n.len().div_ceil(8));
        if limbs[0] & 1 == 0 || e & 1 == 0 || !(3..=MAX_EXPONENT).contains(&e) {
            return None;
        }
        // e < n: with n above 2^64 always true; otherwise compare.
        if limbs.len() == 1 && e >= limbs[0] {
            return None;
        }
        // Newton's iteration doubles the correct low bits of n^-1 each step: 1 -> 64 in 6.
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(limbs[0].wrapping_mul(inv)));
        }
        Some(PublicKey {
            len: n.len(),
            n: limbs,
            e,
            n0_inv: inv.wrapping_neg(),
        })
    }

    /// `s^e mod n` as `len` big-endian bytes, or `None` when `s` (big-endian, any length) is
    /// not below the modulus.
    pub(crate) fn public_op(&self, s: &[u8]) -> Option<Vec<u8>> {
        let s = strip(s);
        let k = self.n.len();
        if s.len() > k * 8 {
            return None;
        }
        let s = to_limbs(s, k);
        if !less(&s, &self.n) {
            return None;
        }
        let r2 = self.r_squared();
        let base = self.mul(&s, &r2);
        let mut acc = base.clone();
        let top = 63 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            acc = self.mul(&acc, &acc);
            if self.e >> bit & 1 == 1 {
                acc = self.mul(&acc, &base);
            }
        }
        let mut one = vec![0u64; k];
        one[0] = 1;
        let out = self.mul(&acc, &one);
        let mut be = Vec::with_capacity(k * 8);
        for limb in out.iter().rev() {
            be.extend_from_slice(&limb.to_be_bytes());
        }
        Some(be.split_off(k * 8 - self.len))
    }

    /// PKCS#1 v1.5 verification of `signature` over `digest` made with `hash`: the
    /// signature must be exactly as long as the modulus and below it, and the recovered
    /// block must be `00 01 FF.. 00 DigestInfo(hash, digest)`, with at least eight FF bytes.
    /// `None` for a digest algorithm without a DigestInfo here.
    pub(crate) fn verify_pkcs1v15(
        &self,
        hash: HashAlgorithm,
        digest: &[u8],
        signature: &[u8],
    ) -> Option<bool> {
        let prefix = digest_info_prefix(hash)?;
        if digest.len() != hash.output_len() {
            return Some(false);
        }
        if signature.len() != self.len {
            return Some(false);
        }
        let Some(em) = self.public_op(signature) else {
            return Some(false);
        };
        let t_len = prefix.len() + digest.len();
        if self.len < t_len + 11 {
            return Some(false);
        }
        let ps = self.len - t_len - 3;
        let expected = [0x00, 0x01]
            .iter()
            .chain(std::iter::repeat_n(&0xff, ps))
            .chain(std::iter::once(&0x00))
            .chain(prefix)
            .chain(digest);
        Some(em.iter().eq(expected))
    }

    /// R^2 mod n (R = 2^(64k)), the factor that takes a number into Montgomery form.
    fn r_squared(&self) -> Vec<u64> {
        let k = self.n.len();
        // x = 2^(bits-1): a power of two below n (n is odd, so it cannot be one).
        let bits = k * 64 - self.n[k - 1].leading_zeros() as usize;
        let mut x = vec![0u64; k];
        x[(bits - 1) / 64] = 1 << ((bits - 1) % 64);
        // Doubling to 2^(64k + 1) mod n: the Montgomery form of 2.
        for _ in bits - 1..k * 64 + 1 {
            self.double(&mut x);
        }
        // Montgomery form of 2^t for t = 64k, by squaring (t -> 2t) and doubling (t -> t+1)
        // along t's bits: the Montgomery form of 2^(64k) is 2^(64k) * R = R^2 mod n.
        let t = k * 64;
        let top = usize::BITS - 1 - t.leading_zeros();
        for bit in (0..top).rev() {
            x = self.mul(&x, &x);
            if t >> bit & 1 == 1 {
                self.double(&mut x);
            }
        }
        x
    }

    /// x = 2x mod n, for x < n.
    fn double(&self, x: &mut [u64]) {
        let mut carry = 0u64;
        for limb in x.iter_mut() {
            let next = *limb >> 63;
            *limb = (*limb << 1) | carry;
            carry = next;
        }
        if carry == 1 || !less(x, &self.n) {
            sub_in_place(x, &self.n);
        }
    }

    /// Montgomery product a * b * R^-1 mod n, for a, b < n: per word of b, a * b_i and the
    /// reduction m * n are added in one pass (two carry chains) and the sum shifted down by
    /// a word. The running sum stays below 2n, so it needs one word more than n.
    fn mul(&self, a: &[u64], b: &[u64]) -> Vec<u64> {
        let n = &self.n[..];
        let k = n.len();
        // Equal lengths, stated once, let the compiler drop the loops' bounds checks.
        let (a, b) = (&a[..k], &b[..k]);
        let mut t = vec![0u64; k + 1];
        for &bi in b {
            let x = u128::from(t[0]) + u128::from(a[0]) * u128::from(bi);
            let m = (x as u64).wrapping_mul(self.n0_inv);
            let y = u128::from(x as u64) + u128::from(m) * u128::from(n[0]);
            let mut c1 = (x >> 64) as u64;
            let mut c2 = (y >> 64) as u64;
            for j in 1..k {
                let x = u128::from(t[j]) + u128::from(a[j]) * u128::from(bi) + u128::from(c1);
                c1 = (x >> 64) as u64;
                let y = u128::from(x as u64) + u128::from(m) * u128::from(n[j]) + u128::from(c2);
                c2 = (y >> 64) as u64;
                t[j - 1] = y as u64;
            }
            let x = u128::from(t[k]) + u128::from(c1) + u128::from(c2);
            t[k - 1] = x as u64;
            t[k] = (x >> 64) as u64;
        }
        let overflow = t[k] != 0;
        t.truncate(k);
        if overflow || !less(&t, n) {
            sub_in_place(&mut t, n);
        }
        t
    }
}

/// The DER DigestInfo header PKCS#1 v1.5 puts before a digest (NULL parameters).
fn digest_info_prefix(hash: HashAlgorithm) -> Option<&'static [u8]> {
    const SHA256: &[u8] = &[
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    const SHA384: &[u8] = &[
        0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
        0x05, 0x00, 0x04, 0x30,
    ];
    const SHA512: &[u8] = &[
        0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
        0x05, 0x00, 0x04, 0x40,
    ];
    match hash {
        HashAlgorithm::Sha256 => Some(SHA256),
        HashAlgorithm::Sha384 => Some(SHA384),
        HashAlgorithm::Sha512 => Some(SHA512),
        _ => None,
    }
}

fn strip(b: &[u8]) -> &[u8] {
    let zeros = b.iter().take_while(|&&x| x == 0).count();
    &b[zeros..]
}

/// Big-endian bytes (at most `k * 8`) as `k` little-endian limbs.
fn to_limbs(be: &[u8], k: usize) -> Vec<u64> {
    let mut limbs = vec![0u64; k];
    for (i, chunk) in be.rchunks(8).enumerate() {
        limbs[i] = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    }
    limbs
}

/// a < b, both `k` limbs.
fn less(a: &[u64], b: &[u64]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// a -= b (mod 2^(64k)).
fn sub_in_place(a: &mut [u64], b: &[u64]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(borrow);
        *x = d2;
        borrow = u64::from(b1 | b2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::bn::{BigNum, BigNumRef};
    use openssl::rsa::{Padding, Rsa};

    /// A random value below `n`, as many bytes as `n`.
    fn below(n: &BigNumRef, seed: u8) -> Vec<u8> {
        let mut v = BigNum::new().expect("bn");
        n.rand_range(&mut v).expect("rand_range");
        let mut out = v.to_vec_padded(n.num_bytes()).expect("pad");
        if seed == 0 {
            out.iter_mut().for_each(|b| *b = 0);
        }
        out
    }

    /// The public operation equals OpenSSL's raw RSA (no padding) on random keys of every
    /// size from 1024 to 4096 bits and exponents 3, 17 and 65537, at random points, zero and
    /// n - 1; values at or above n are refused as OpenSSL refuses them.
    #[test]
    fn public_operation_equals_openssls() {
        for bits in [1024u32, 1536, 2048, 2056, 3072, 4096] {
            for e in [3u32, 17, 65537] {
                let rsa =
                    Rsa::generate_with_e(bits, &BigNum::from_u32(e).expect("e")).expect("generate");
                let n = rsa.n().to_vec();
                let key = PublicKey::new(&n, &rsa.e().to_vec()).expect("supported key");
                let mut n_minus_1 = BigNum::from_slice(&n).expect("n");
                n_minus_1.sub_word(1).expect("sub");
                let mut inputs: Vec<Vec<u8>> = (0..8).map(|i| below(rsa.n(), i + 1)).collect();
                inputs.push(below(rsa.n(), 0));
                inputs.push(n_minus_1.to_vec_padded(n.len() as i32).expect("pad"));
                for s in inputs {
                    let mut want = vec![0u8; n.len()];
                    let len = rsa
                        .public_decrypt(&s, &mut want, Padding::NONE)
                        .expect("openssl public op");
                    assert_eq!(len, n.len());
                    assert_eq!(
                        key.public_op(&s).expect("below n"),
                        want,
                        "{bits} bits, e = {e}"
                    );
                }
                let mut too_big = vec![0u8; n.len()];
                assert!(rsa.public_decrypt(&n, &mut too_big, Padding::NONE).is_err());
                assert_eq!(key.public_op(&n), None, "s = n");
                assert_eq!(key.public_op(&[0xff; 513]), None, "s longer than n");
            }
        }
    }

    /// Verification agrees with OpenSSL's signatures: a good one verifies, and one flipped
    /// bit anywhere in the signature or the digest, a wrong hash or a truncated signature
    /// does not.
    #[test]
    fn pkcs1v15_verification_equals_openssls() {
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::sign::Signer;
        for (bits, hash, md) in [
            (2048u32, HashAlgorithm::Sha256, MessageDigest::sha256()),
            (3072, HashAlgorithm::Sha384, MessageDigest::sha384()),
            (4096, HashAlgorithm::Sha512, MessageDigest::sha512()),
        ] {
            let rsa = Rsa::generate(bits).expect("generate");
            let key = PublicKey::new(&rsa.n().to_vec(), &rsa.e().to_vec()).expect("key");
            let pkey = PKey::from_rsa(rsa).expect("pkey");
            let message = b"trustlaunch signed attributes";
            let mut signer = Signer::new(md, &pkey).expect("signer");
            signer.update(message).expect("update");
            let sig = signer.sign_to_vec().expect("sign");
            let digest = hash.digest(message);
            assert_eq!(key.verify_pkcs1v15(hash, &digest, &sig), Some(true));
            for i in (0..sig.len()).step_by(37) {
                let mut bad = sig.clone();
                bad[i] ^= 0x10;
                assert_eq!(
                    key.verify_pkcs1v15(hash, &digest, &bad),
                    Some(false),
                    "byte {i}"
                );
            }
            let mut bad_digest = digest.clone();
            bad_digest[3] ^= 1;
            assert_eq!(key.verify_pkcs1v15(hash, &bad_digest, &sig), Some(false));
            let other = if hash == HashAlgorithm::Sha256 {
                HashAlgorithm::Sha512
            } else {
                HashAlgorithm::Sha256
            };
            assert_eq!(
                key.verify_pkcs1v15(other, &other.digest(message), &sig),
                Some(false)
            );
            assert_eq!(key.verify_pkcs1v15(hash, &digest, &sig[1..]), Some(false));
            assert_eq!(
                key.verify_pkcs1v15(HashAlgorithm::Sha1, &[0; 20], &sig),
                None
            );
        }
    }

    #[test]
    fn unsupported_keys_are_left_to_openssl() {
        let odd = [0xc5u8; 256];
        assert!(PublicKey::new(&odd, &[1, 0, 1]).is_some());
        let mut even = odd;
        even[255] = 0xc4;
        assert!(PublicKey::new(&even, &[1, 0, 1]).is_none(), "even modulus");
        assert!(PublicKey::new(&odd, &[2]).is_none(), "even exponent");
        assert!(PublicKey::new(&odd, &[1]).is_none(), "exponent 1");
        assert!(
            PublicKey::new(&odd, &[2, 0, 0, 0, 1]).is_none(),
            "exponent 2^33 + 1"
        );
        assert!(
            PublicKey::new(&[0xc5; 513], &[3]).is_none(),
            "4104-bit modulus"
        );
        assert!(
            PublicKey::new(&[0x65], &[0x67]).is_none(),
            "exponent above modulus"
        );
        assert!(PublicKey::new(&[], &[3]).is_none(), "empty modulus");
    }
}
