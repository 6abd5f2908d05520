//! The TPM's random number generator: HMAC_DRBG with SHA-256 (NIST SP 800-90A Rev. 1,
//! section 10.1.2), seeded by the host's entropy and stirred by TPM2_StirRandom.

use crate::hash::HashAlg;

const OUTLEN: usize = 32;
/// SP 800-90A Table 2: at most 2^48 requests between reseeds. We reseed long before.
const RESEED_INTERVAL: u64 = 1 << 32;

pub struct HmacDrbg {
    key: [u8; OUTLEN],
    v: [u8; OUTLEN],
    reseed_counter: u64,
}

impl HmacDrbg {
    /// Instantiate (10.1.2.3) from entropy input, nonce and personalization string.
    pub fn new(entropy: &[u8], nonce: &[u8], personalization: &[u8]) -> Self {
        let mut d = HmacDrbg {
            key: [0; OUTLEN],
            v: [1; OUTLEN],
            reseed_counter: 1,
        };
        d.update(&[entropy, nonce, personalization]);
        d
    }

    /// HMAC_DRBG_Update (10.1.2.2).
    fn update(&mut self, provided: &[&[u8]]) {
        let empty = provided.iter().all(|p| p.is_empty());
        for round in [0u8, 1u8] {
            let mut parts: Vec<&[u8]> = vec![&self.v, std::slice::from_ref(&round)];
            parts.extend_from_slice(provided);
            let k = HashAlg::Sha256.hmac(&self.key, &parts);
            self.key.copy_from_slice(&k);
            let v = HashAlg::Sha256.hmac(&self.key, &[&self.v]);
            self.v.copy_from_slice(&v);
            if empty {
                break;
            }
        }
    }

    /// Reseed (10.1.2.4) with new entropy and additional input.
    pub fn reseed(&mut self, entropy: &[u8], additional: &[u8]) {
        self.update(&[entropy, additional]);
        self.reseed_counter = 1;
    }

    /// Generate (10.1.2.5) `out.len()` bytes with optional additional input.
    pub fn generate(&mut self, out: &mut [u8], additional: &[u8]) {
        if self.reseed_counter >= RESEED_INTERVAL {
            // Without fresh entropy, fold the current state back in (a host reseeds far earlier).
            let state = self.v;
            self.reseed(&state, b"interval");
        }
        if !additional.is_empty() {
            self.update(&[additional]);
        }
        for chunk in out.chunks_mut(OUTLEN) {
            let v = HashAlg::Sha256.hmac(&self.key, &[&self.v]);
            self.v.copy_from_slice(&v);
            chunk
                .iter_mut()
                .zip(self.v.iter())
                .for_each(|(d, s)| *d = *s);
        }
        self.update(&[additional]);
        self.reseed_counter = self.reseed_counter.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST CAVP HMAC_DRBG.rsp, [SHA-256], PredictionResistance = False, EntropyInputLen = 256,
    /// NonceLen = 128, PersonalizationStringLen = 0, AdditionalInputLen = 0, COUNT = 0:
    /// two Generate calls of 1024 bits; the second output is the answer.
    #[test]
    fn cavp_hmac_drbg_sha256_count0() {
        let entropy =
            hex::decode("ca851911349384bffe89de1cbdc46e6831e44d34a4fb935ee285dd14b71a7488")
                .expect("hex");
        let nonce = hex::decode("659ba96c601dc69fc902940805ec0ca8").expect("hex");
        let mut d = HmacDrbg::new(&entropy, &nonce, &[]);
        let mut out = [0u8; 128];
        d.generate(&mut out, &[]);
        d.generate(&mut out, &[]);
        assert_eq!(
            hex::encode(out),
            "e528e9abf2dece54d47c7e75e5fe302149f817ea9fb4bee6f4199697d04d5b89\
             d54fbb978a15b5c443c9ec21036d2460b6f73ebad0dc2aba6e624abf07745bc1\
             07694bb7547bb0995f70de25d6b29e2d3011bb19d27676c07162c8b5ccde0668\
             961df86803482cb37ed6d5c0bb8d50cf1f50d476aa0458bdaba806f48be9dcb8"
        );
    }
}
