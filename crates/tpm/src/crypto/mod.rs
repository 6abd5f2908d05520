//! Asymmetric cryptography for TPM objects: RSA (PKCS#1 v1.5 and PSS signatures, OAEP,
//! PKCS#1 v1.5 and raw encryption) and ECC on NIST P-256/P-384 (ECDSA, ECDH), over
//! RustCrypto's `rsa`, `p256` and `p384` crates, plus the deterministic key derivation that
//! primary objects need ("derivation v1", see [`rsa::generate`] and [`ecc::generate`]).
//!
//! Everything that needs randomness takes a [`ByteSource`]: the engine passes its DRBG for
//! ordinary objects and nonces, or a [`KdfStream`] seeded from a hierarchy's primary seed when
//! a primary object must come out the same every time.
//!
//! Errors are TPM_RC values ([`Rc`]) without parameter numbers; callers add those.

pub mod ecc;
pub mod rsa;

#[cfg(test)]
mod interop_tests;

use crate::hash::HashAlg;
#[cfg(doc)]
use crate::rc::Rc;

/// A source of deterministic or random bytes: the engine passes either its DRBG or a
/// [`KdfStream`]. Every call must fill all of `out`.
pub trait ByteSource {
    fn fill(&mut self, out: &mut [u8]);
}

impl<F: FnMut(&mut [u8])> ByteSource for F {
    fn fill(&mut self, out: &mut [u8]) {
        self(out)
    }
}

/// The KDF-seeded byte stream from which primary objects are derived (frozen: "derivation
/// v1"; it must never change, or endorsement keys would change across upgrades).
///
/// Each [`fill`](ByteSource::fill) of `n` bytes is one request. A request returns the first `n`
/// bytes of the blocks
///
/// `HMAC_alg(seed, counter_be32 || label || 0x00 || context_u || context_v || bits_be32)`
///
/// where `bits = 8 * n` (the size of *this* request) and `counter` continues across requests:
/// the first block of the first request uses counter 1, and a request of `n` bytes consumes
/// `ceil(n / digest size)` counter values. So the first request equals
/// `kdfa(alg, seed, label, context_u, context_v, 8 * n)` and later ones continue where the
/// previous request's blocks stopped (unused bytes of a request's last block are dropped).
/// As in [`crate::kdf::kdfa`], a label that already ends in 0x00 is used without that octet,
/// so `b"PRIMARY"` and `b"PRIMARY\0"` are the same label. This mirrors the TPM reference
/// implementation's seeded-KDF DRBG (`DRBG_InstantiateSeededKdf`).
pub struct KdfStream {
    alg: HashAlg,
    seed: Vec<u8>,
    label: Vec<u8>,
    context_u: Vec<u8>,
    context_v: Vec<u8>,
    counter: u32,
}

impl KdfStream {
    pub fn new(
        alg: HashAlg,
        seed: &[u8],
        label: &[u8],
        context_u: &[u8],
        context_v: &[u8],
    ) -> KdfStream {
        let label = label.strip_suffix(&[0]).unwrap_or(label);
        KdfStream {
            alg,
            seed: seed.to_vec(),
            label: label.to_vec(),
            context_u: context_u.to_vec(),
            context_v: context_v.to_vec(),
            counter: 0,
        }
    }
}

impl ByteSource for KdfStream {
    fn fill(&mut self, out: &mut [u8]) {
        let bits = u32::try_from(out.len())
            .ok()
            .and_then(|n| n.checked_mul(8))
            .unwrap_or(u32::MAX);
        for chunk in out.chunks_mut(self.alg.size()) {
            self.counter = self.counter.wrapping_add(1);
            let block = self.alg.hmac(
                &self.seed,
                &[
                    &self.counter.to_be_bytes(),
                    &self.label,
                    &[0],
                    &self.context_u,
                    &self.context_v,
                    &bits.to_be_bytes(),
                ],
            );
            for (o, b) in chunk.iter_mut().zip(block) {
                *o = b;
            }
        }
    }
}

impl Drop for KdfStream {
    fn drop(&mut self) {
        // Best effort: the seed is a hierarchy secret.
        self.seed.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.seed);
    }
}

/// Adapts a [`ByteSource`] to the `rand_core` 0.6 traits the RustCrypto crates take.
pub(crate) struct Rng<'a>(pub(crate) &'a mut dyn ByteSource);

impl rand_core::RngCore for Rng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        u32::from_be_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_be_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest)
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for Rng<'_> {}

/// `bytes` as a big-endian number of exactly `size` octets: left-padded with zeros, or
/// `None` if it needs more than `size` octets (leading zero octets beyond `size` are allowed).
pub(crate) fn left_pad(bytes: &[u8], size: usize) -> Option<Vec<u8>> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let significant = bytes.get(first..)?;
    if significant.len() > size {
        return None;
    }
    let mut out = vec![0u8; size - significant.len()];
    out.extend_from_slice(significant);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kdf::kdfa;

    const SEED: &[u8] = b"an example primary seed of 32 b.";

    #[test]
    fn kdf_stream_first_request_is_kdfa() {
        for alg in HashAlg::ALL {
            for n in [1usize, 20, 32, 33, 64, 136, 200] {
                let mut s = KdfStream::new(alg, SEED, b"LABEL\0", b"ctxU", b"ctxV");
                let mut out = vec![0u8; n];
                s.fill(&mut out);
                let expected = kdfa(alg, SEED, b"LABEL", b"ctxU", b"ctxV", (n * 8) as u32);
                assert_eq!(out, expected, "{alg:?} {n}");
            }
        }
    }

    #[test]
    fn kdf_stream_continues_the_counter() {
        let alg = HashAlg::Sha256;
        let mut s = KdfStream::new(alg, SEED, b"L", b"u", b"v");
        let mut first = [0u8; 40]; // two blocks: counters 1 and 2
        let mut second = [0u8; 10]; // one block: counter 3, bits = 80
        s.fill(&mut first);
        s.fill(&mut second);
        let block = |counter: u32, bits: u32| {
            alg.hmac(
                SEED,
                &[
                    &counter.to_be_bytes(),
                    b"L",
                    &[0],
                    b"u",
                    b"v",
                    &bits.to_be_bytes(),
                ],
            )
        };
        let mut expected_first = block(1, 320);
        expected_first.extend(block(2, 320));
        assert_eq!(&first[..], &expected_first[..40]);
        assert_eq!(&second[..], &block(3, 80)[..10]);
        // A fresh stream's first 10-byte request differs: it uses counter 1.
        let mut fresh = [0u8; 10];
        KdfStream::new(alg, SEED, b"L", b"u", b"v").fill(&mut fresh);
        assert_ne!(fresh, second);
    }

    #[test]
    fn closures_are_byte_sources() {
        let mut n = 0u8;
        let mut src = |out: &mut [u8]| {
            for b in out {
                n = n.wrapping_add(1);
                *b = n;
            }
        };
        let mut out = [0u8; 3];
        (&mut src as &mut dyn ByteSource).fill(&mut out);
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn left_pad_rules() {
        assert_eq!(left_pad(&[1, 2], 4), Some(vec![0, 0, 1, 2]));
        assert_eq!(left_pad(&[0, 0, 0, 1, 2], 4), Some(vec![0, 0, 1, 2]));
        assert_eq!(left_pad(&[1, 2, 3, 4, 5], 4), None);
        assert_eq!(left_pad(&[], 2), Some(vec![0, 0]));
    }
}
