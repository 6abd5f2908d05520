//! RSA for TPM objects: key generation (random, or derived for primary objects), PKCS#1 v1.5
//! and PSS signatures, OAEP / PKCS#1 v1.5 / raw encryption.
//!
//! Private-key operations (signing, decryption) run in OpenSSL, whose RSA is constant-time
//! and blinded: the `rsa` crate's is neither (RUSTSEC-2023-0071, the Marvin timing attack),
//! and a guest timing its own vTPM must not recover the EK. As the reference implementation
//! does, OpenSSL computes the private operation on a block encoded here (EMSA-PKCS1-v1_5,
//! EMSA-PSS, with the salt from the TPM's DRBG), and PKCS#1 v1.5 decryption padding is checked
//! here; OAEP decryption is OpenSSL's whole. Key generation, public-key operations and key
//! parsing stay with the `rsa` crate (no secret in the timing of a public operation).
//!
//! Error codes: a modulus outside 1024..=4096 bits or a generation size other than 2048/3072
//! is `KEY_SIZE`; a malformed public key (even modulus, bad exponent) is `KEY`; a generation
//! exponent that is not 0 or a prime ≥ 65537 is `RANGE` (as the reference implementation);
//! a prime that does not factor the modulus is `BINDING`; a digest whose length is not the
//! hash's is `SIZE`; a signature that does not verify is `SIGNATURE`; a ciphertext that is
//! not exactly the modulus size is `SIZE`; anything else that cannot be encrypted or
//! decrypted (too long, numerically ≥ n, bad padding, a non-UTF-8 OAEP label) is `VALUE`.

use std::fmt;
use std::sync::OnceLock;

use num_bigint_dig::prime::{probably_prime, probably_prime_lucas, probably_prime_miller_rabin};
use rsa::hazmat::rsa_encrypt;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};

use super::{left_pad, ByteSource, Rng};
use crate::hash::HashAlg;
use crate::rc::Rc;

/// The exponent that a TPMS_RSA_PARMS exponent of 0 stands for.
pub const DEFAULT_EXPONENT: u32 = 65537;
/// The smallest modulus [`RsaPublic::new`] accepts, in bits.
pub const MIN_BITS: usize = 1024;
/// The largest modulus [`RsaPublic::new`] accepts, in bits.
pub const MAX_BITS: usize = 4096;

/// Derivation v1 constant: odd candidates examined per draw before drawing again.
const WINDOW: usize = 4096;
/// Derivation v1 constant: draws per prime before giving up with `NO_RESULT`.
const MAX_DRAWS: u32 = 64;
/// The sieve uses the odd primes below this bound (an optimisation only: it cannot change
/// which prime is found).
const SIEVE_BOUND: usize = 1 << 16;
/// Miller-Rabin rounds with pseudorandom bases (a deterministic function of the candidate)
/// that confirm a candidate after it passed the base-2 round, before the strong Lucas test.
/// Baillie-PSW alone has no known counterexample; FIPS 186-4 Table C.3 asks for 4 rounds
/// (1024-bit primes) or 3 (1536-bit) plus Lucas for an error probability of 2^-100.
const MR_ROUNDS: usize = 5;

/// Runs `$body` with `$d` naming the RustCrypto digest type of `$hash`.
macro_rules! with_digest {
    ($hash:expr, $d:ident => $body:expr) => {
        match $hash {
            HashAlg::Sha1 => {
                type $d = sha1::Sha1;
                $body
            }
            HashAlg::Sha256 => {
                type $d = sha2::Sha256;
                $body
            }
            HashAlg::Sha384 => {
                type $d = sha2::Sha384;
                $body
            }
            HashAlg::Sha512 => {
                type $d = sha2::Sha512;
                $body
            }
        }
    };
}

/// An RSA public key (modulus and exponent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaPublic(RsaPublicKey);

/// An RSA private key: two primes, the exponent, and what follows from them; the OpenSSL
/// key that does its private operations is made on first use.
#[derive(Clone)]
pub struct RsaPrivate(
    RsaPrivateKey,
    OnceLock<Option<openssl::rsa::Rsa<openssl::pkey::Private>>>,
);

impl fmt::Debug for RsaPrivate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaPrivate")
            .field("bits", &self.0.n().bits())
            .finish_non_exhaustive()
    }
}

/// Generates an RSA key of `bits` (2048 or 3072, else `KEY_SIZE`) with public exponent
/// `exponent` (0 means 65537; otherwise it must be a prime ≥ 65537, else `RANGE`), driven only
/// by `src`.
///
/// # Derivation v1 (frozen)
///
/// This algorithm must never change: primary keys such as the EK are re-derived from their
/// seed through it, and must come out the same after any upgrade. With `h = bits / 2`:
///
/// 1. **p**: draw `h / 8` bytes with one `src.fill` call and read them as a big-endian
///    number `c`; set its two most significant bits (bits `h-1` and `h-2`) and its least
///    significant bit. Then `p` is the **smallest prime** `x` among `c, c+2, c+4, …,
///    c+2·(4096-1)` (4096 odd candidates) with `x < 2^h` and `gcd(x - 1, e) = 1`. If there is
///    none, draw again (a fresh `fill` of `h / 8` bytes); after 64 draws without a prime,
///    fail with `NO_RESULT`.
/// 2. **q**: the same, continuing with the following draws from `src`, except that a
///    candidate prime is rejected (and the search window abandoned, i.e. a new draw made)
///    when `|p - q| ≤ 2^(h-100)` (FIPS 186-4 B.3.1; this includes `q = p`). Again at most 64
///    draws.
/// 3. `n = p·q` (exactly `bits` bits long, since p and q are ≥ 0.75·2^h); `d = e^-1 mod
///    lcm(p-1, q-1)`. [`RsaPrivate::prime`] returns `p`, the first prime found.
///
/// Which numbers are prime is a mathematical fact, so the definition above does not depend on
/// how primality is tested. This implementation sieves each window with the odd primes below
/// 2^16, runs a base-2 Miller-Rabin round on the survivors, and confirms with 5 more
/// Miller-Rabin rounds (bases a deterministic function of `x`) and a strong Lucas test
/// (`num_bigint_dig::prime`): together a Baillie-PSW test plus 5 rounds, beyond FIPS 186-4
/// Table C.3. None of these can reject a prime, and the chance that a composite passes all
/// of them is far below 2^-100.
pub fn generate(bits: u16, exponent: u32, src: &mut dyn ByteSource) -> Result<RsaPrivate, Rc> {
    generate_with(bits, exponent, src, WINDOW, MAX_DRAWS)
}

fn generate_with(
    bits: u16,
    exponent: u32,
    src: &mut dyn ByteSource,
    window: usize,
    max_draws: u32,
) -> Result<RsaPrivate, Rc> {
    if bits != 2048 && bits != 3072 {
        return Err(Rc::KEY_SIZE);
    }
    let e = generation_exponent(exponent)?;
    let half = usize::from(bits / 2);
    let p = find_prime(half, e, src, window, max_draws, None)?;
    let q = find_prime(half, e, src, window, max_draws, Some(&p))?;
    let key = RsaPrivateKey::from_p_q(p, q, BigUint::from(e)).map_err(|_| Rc::NO_RESULT)?;
    if key.n().bits() != usize::from(bits) {
        return Err(Rc::NO_RESULT);
    }
    Ok(RsaPrivate::wrap(key))
}

/// The exponent a key-generation request names: 0 means 65537; others must be prime and at
/// least 65537 (`RANGE`), as in the reference implementation's CryptRsaGenerateKey.
fn generation_exponent(exponent: u32) -> Result<u32, Rc> {
    match exponent {
        0 => Ok(DEFAULT_EXPONENT),
        // probably_prime is exact below 2^64.
        e if e >= DEFAULT_EXPONENT && probably_prime(&BigUint::from(e), 1) => Ok(e),
        _ => Err(Rc::RANGE),
    }
}

/// Step 1 or 2 of derivation v1: a prime of exactly `half` bits (`half` a multiple of 8).
fn find_prime(
    half: usize,
    e: u32,
    src: &mut dyn ByteSource,
    window: usize,
    max_draws: u32,
    other: Option<&BigUint>,
) -> Result<BigUint, Rc> {
    let mut bytes = vec![0u8; half / 8];
    for _ in 0..max_draws {
        src.fill(&mut bytes);
        if let Some(first) = bytes.first_mut() {
            *first |= 0xC0;
        }
        if let Some(last) = bytes.last_mut() {
            *last |= 0x01;
        }
        if let Some(x) = search_window(&bytes, half, e, window, other) {
            return Ok(x);
        }
    }
    Err(Rc::NO_RESULT)
}

/// The odd primes below [`SIEVE_BOUND`], paired for residue computation.
fn sieve_primes() -> &'static [u32] {
    static PRIMES: OnceLock<Vec<u32>> = OnceLock::new();
    PRIMES.get_or_init(|| {
        let mut composite = vec![false; SIEVE_BOUND];
        let mut primes = Vec::new();
        for i in (3..SIEVE_BOUND).step_by(2) {
            if composite.get(i) == Some(&false) {
                if let Ok(p) = u32::try_from(i) {
                    primes.push(p);
                }
                for m in (i * i..SIEVE_BOUND).step_by(2 * i) {
                    if let Some(c) = composite.get_mut(m) {
                        *c = true;
                    }
                }
            }
        }
        primes
    })
}

/// `x mod m` for a big-endian number `x` and `0 < m < 2^32`.
fn rem_u32(x: &[u8], m: u32) -> u32 {
    let m = u64::from(m);
    let head = x.len() % 4;
    let (first, rest) = x.split_at(head);
    let mut r = first
        .iter()
        .fold(0u64, |r, b| ((r << 8) | u64::from(*b)) % m);
    for chunk in rest.chunks_exact(4) {
        let word = chunk.iter().fold(0u64, |w, b| (w << 8) | u64::from(*b));
        r = ((r << 32) | word) % m;
    }
    // r < m < 2^32.
    u32::try_from(r).unwrap_or(0)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `composite[j]` is set when `start + 2j` (`start` odd, big-endian) has an odd prime factor
/// below [`SIEVE_BOUND`]. No candidate is itself such a prime: all are ≥ 2^(half-1).
fn sieve(start: &[u8], window: usize) -> Vec<bool> {
    let mut composite = vec![false; window];
    for pair in sieve_primes().chunks(2) {
        // Both primes are below 2^16, so their product fits in a u32.
        let modulus = pair.iter().product::<u32>();
        let r = rem_u32(start, modulus);
        for &p in pair {
            let r = r % p;
            // start + 2j ≡ 0 (mod p)  ⇔  j ≡ (p - r) · 2^-1 (mod p), with 2^-1 = (p + 1) / 2.
            let inv2 = u64::from(p / 2 + 1); // (p + 1) / 2 for odd p
            let first = u64::from((p - r) % p) * inv2 % u64::from(p);
            let (Ok(first), Ok(step)) = (usize::try_from(first), usize::try_from(p)) else {
                continue;
            };
            for j in (first..window).step_by(step) {
                if let Some(c) = composite.get_mut(j) {
                    *c = true;
                }
            }
        }
    }
    composite
}

/// The first acceptable prime among the `window` odd candidates starting at the odd number
/// `start` (big-endian), below `2^half`; `None` if there is none.
fn search_window(
    start: &[u8],
    half: usize,
    e: u32,
    window: usize,
    other: Option<&BigUint>,
) -> Option<BigUint> {
    let composite = sieve(start, window);
    let base = BigUint::from_bytes_be(start);
    let min_distance = BigUint::from(1u8) << half.saturating_sub(100);
    for (j, composite) in composite.iter().enumerate() {
        if *composite {
            continue;
        }
        let x = &base + BigUint::from(2 * j);
        if x.bits() > half {
            return None;
        }
        // Baillie-PSW (Miller-Rabin base 2, then strong Lucas) plus MR_ROUNDS more rounds.
        if !probably_prime_miller_rabin(&x, 1, true)
            || !probably_prime_miller_rabin(&x, MR_ROUNDS, false)
            || !probably_prime_lucas(&x)
        {
            continue;
        }
        let x_minus_1 = (&x - 1u32).to_bytes_be();
        if gcd(e, rem_u32(&x_minus_1, e)) != 1 {
            continue;
        }
        if let Some(p) = other {
            let distance = if &x > p { &x - p } else { p - &x };
            if distance <= min_distance {
                // Too close to p: abandon this window, draw again.
                return None;
            }
        }
        return Some(x);
    }
    None
}

fn check_digest(hash: HashAlg, digest: &[u8]) -> Result<(), Rc> {
    if digest.len() == hash.size() {
        Ok(())
    } else {
        Err(Rc::SIZE)
    }
}

/// The DER DigestInfo prefix of `hash` (RFC 8017 9.2, note 1): the prefix, then the digest.
fn digest_info_prefix(hash: HashAlg) -> &'static [u8] {
    match hash {
        HashAlg::Sha1 => &[
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ],
        HashAlg::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        HashAlg::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        HashAlg::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    }
}

/// EMSA-PKCS1-v1_5-ENCODE (RFC 8017 9.2) of a `hash` digest into `k` octets:
/// 0x00 0x01 0xFF… 0x00 DigestInfo. `VALUE` when the key is too short for it.
fn emsa_pkcs1v15(hash: HashAlg, digest: &[u8], k: usize) -> Result<Vec<u8>, Rc> {
    let prefix = digest_info_prefix(hash);
    let t_len = prefix.len() + digest.len();
    let ps = k
        .checked_sub(t_len + 3)
        .filter(|ps| *ps >= 8)
        .ok_or(Rc::VALUE)?;
    let mut em = Vec::with_capacity(k);
    em.extend_from_slice(&[0x00, 0x01]);
    em.resize(2 + ps, 0xFF);
    em.push(0x00);
    em.extend_from_slice(prefix);
    em.extend_from_slice(digest);
    Ok(em)
}

/// EMSA-PSS-ENCODE (RFC 8017 9.1.1) of a `hash` digest with `salt` and MGF1(`hash`), for an
/// `em_bits`-bit encoded message (modulus bits - 1): ceil(em_bits / 8) octets.
fn emsa_pss(hash: HashAlg, digest: &[u8], salt: &[u8], em_bits: usize) -> Result<Vec<u8>, Rc> {
    let em_len = em_bits.div_ceil(8);
    let h_len = hash.size();
    let db_len = em_len
        .checked_sub(h_len + 1)
        .filter(|db| *db > salt.len())
        .ok_or(Rc::VALUE)?;
    let h = hash.digest(&[&[0u8; 8], digest, salt]);
    let mut db = vec![0u8; db_len - salt.len() - 1];
    db.push(0x01);
    db.extend_from_slice(salt);
    for (d, m) in db.iter_mut().zip(mgf1(hash, &h, db_len)) {
        *d ^= m;
    }
    if let Some(first) = db.first_mut() {
        *first &= 0xFFu8 >> (8 * em_len - em_bits);
    }
    db.extend_from_slice(&h);
    db.push(0xBC);
    Ok(db)
}

/// EME-PKCS1-v1_5 decoding (RFC 8017 7.2.2 step 3): the message after
/// 0x00 0x02 PS (at least 8 nonzero octets) 0x00, or `None`. Every octet is examined whatever
/// the outcome, without branching on the padding's octets.
fn eme_pkcs1v15_decode(em: &[u8]) -> Option<Vec<u8>> {
    let mut bad = u8::from(em.first() != Some(&0x00)) | u8::from(em.get(1) != Some(&0x02));
    // The index of the first zero octet after the first two (0 while none is found).
    let mut sep = 0usize;
    for (i, b) in em.iter().enumerate().skip(2) {
        let zero = usize::from(*b == 0);
        let unset = usize::from(sep == 0);
        sep |= i * (zero & unset);
    }
    bad |= u8::from(sep == 0) | u8::from(sep < 10);
    if bad != 0 {
        return None;
    }
    em.get(sep + 1..).map(<[u8]>::to_vec)
}

/// The rsa crate takes OAEP labels as `String`s: a label must be UTF-8 (`VALUE` otherwise).
/// TPM labels are NUL-terminated ASCII strings such as "IDENTITY\0", passed with the NUL.
fn oaep_scheme(hash: HashAlg, label: &[u8]) -> Result<Oaep, Rc> {
    let label = std::str::from_utf8(label).map_err(|_| Rc::VALUE)?;
    Ok(with_digest!(hash, D => {
        if label.is_empty() {
            Oaep::new::<D>()
        } else {
            Oaep::new_with_label::<D, _>(label)
        }
    }))
}

/// MGF1 (PKCS #1 B.2.1), used only to find a PSS signature's salt length.
fn mgf1(hash: HashAlg, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.size());
    let mut counter: u32 = 0;
    while out.len() < len {
        out.extend(hash.digest(&[seed, &counter.to_be_bytes()]));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// The salt length that the encoded message `em` (the signature raised to e, `k` octets)
/// declares, per EMSA-PSS-VERIFY (RFC 8017 9.1.2) steps 4-10; `None` when it is malformed.
/// This only chooses the salt length: the rsa crate then verifies the signature in full.
fn pss_salt_len(em: &[u8], mod_bits: usize, hash: HashAlg) -> Option<usize> {
    let em_bits = mod_bits.checked_sub(1)?;
    let em_len = em_bits.div_ceil(8);
    let em = em.get(em.len().checked_sub(em_len)?..)?;
    if em.last() != Some(&0xBC) {
        return None;
    }
    let h_len = hash.size();
    let db_len = em_len.checked_sub(h_len + 1)?;
    let masked_db = em.get(..db_len)?;
    let h = em.get(db_len..db_len + h_len)?;
    let mut db: Vec<u8> = masked_db
        .iter()
        .zip(mgf1(hash, h, db_len))
        .map(|(a, b)| a ^ b)
        .collect();
    if let Some(first) = db.first_mut() {
        *first &= 0xFFu8 >> (8 * em_len - em_bits);
    }
    let one = db.iter().position(|b| *b != 0)?;
    if db.get(one) != Some(&1) {
        return None;
    }
    Some(db_len - one - 1)
}

impl RsaPublic {
    /// A public key from its big-endian modulus (leading zero octets allowed) and exponent
    /// (0 means 65537). The modulus must have 1024 to 4096 bits (`KEY_SIZE`); it must be odd
    /// and the exponent odd, ≥ 3 and < n (`KEY`).
    pub fn new(modulus: &[u8], exponent: u32) -> Result<RsaPublic, Rc> {
        let n = BigUint::from_bytes_be(modulus);
        if !(MIN_BITS..=MAX_BITS).contains(&n.bits()) {
            return Err(Rc::KEY_SIZE);
        }
        let e = if exponent == 0 {
            DEFAULT_EXPONENT
        } else {
            exponent
        };
        RsaPublicKey::new(n, BigUint::from(e))
            .map(RsaPublic)
            .map_err(|_| Rc::KEY)
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.0.n().bits()
    }

    /// Modulus size in octets (`k`): the size of signatures and ciphertexts.
    pub fn size(&self) -> usize {
        self.0.size()
    }

    /// The modulus, big-endian, `size()` octets.
    pub fn modulus(&self) -> Vec<u8> {
        to_bytes(self.0.n(), self.size())
    }

    /// The public exponent (65537 when the key was made with exponent 0).
    pub fn exponent(&self) -> u32 {
        let e = self.0.e().to_bytes_be();
        e.iter()
            .fold(0u32, |acc, b| acc.wrapping_shl(8) | u32::from(*b))
    }

    /// RSASSA-PKCS1-v1_5 verification of `sig` over `digest` (a `hash` digest).
    pub fn verify_pkcs1v15(&self, hash: HashAlg, digest: &[u8], sig: &[u8]) -> Result<(), Rc> {
        check_digest(hash, digest)?;
        let scheme = with_digest!(hash, D => Pkcs1v15Sign::new::<D>());
        self.0
            .verify(scheme, digest, sig)
            .map_err(|_| Rc::SIGNATURE)
    }

    /// RSASSA-PSS verification (MGF1 with the same hash) that accepts any salt length, as
    /// TPMs do: the salt length is read from the encoded message, then the signature is
    /// verified with it.
    pub fn verify_pss(&self, hash: HashAlg, digest: &[u8], sig: &[u8]) -> Result<(), Rc> {
        check_digest(hash, digest)?;
        let k = self.size();
        if sig.len() != k {
            return Err(Rc::SIGNATURE);
        }
        let s = BigUint::from_bytes_be(sig);
        if &s >= self.0.n() {
            return Err(Rc::SIGNATURE);
        }
        let em = rsa_encrypt(&self.0, &s).map_err(|_| Rc::SIGNATURE)?;
        let salt_len = pss_salt_len(&to_bytes(&em, k), self.bits(), hash).ok_or(Rc::SIGNATURE)?;
        let scheme = with_digest!(hash, D => Pss::new_with_salt::<D>(salt_len));
        self.0
            .verify(scheme, digest, sig)
            .map_err(|_| Rc::SIGNATURE)
    }

    /// RSAES-OAEP encryption with `hash` for the label and MGF1. `label` is used exactly as
    /// given (TPM labels such as "DUPLICATE\0" include their NUL); it must be UTF-8.
    pub fn encrypt_oaep(
        &self,
        hash: HashAlg,
        label: &[u8],
        msg: &[u8],
        rng: &mut dyn ByteSource,
    ) -> Result<Vec<u8>, Rc> {
        let scheme = oaep_scheme(hash, label)?;
        self.0
            .encrypt(&mut Rng(rng), scheme, msg)
            .map_err(|_| Rc::VALUE)
    }

    /// RSAES-PKCS1-v1_5 encryption.
    pub fn encrypt_pkcs1(&self, msg: &[u8], rng: &mut dyn ByteSource) -> Result<Vec<u8>, Rc> {
        self.0
            .encrypt(&mut Rng(rng), Pkcs1v15Encrypt, msg)
            .map_err(|_| Rc::VALUE)
    }

    /// Raw RSA (TPM_ALG_NULL scheme): `msg` read as a big-endian number (at most `size()`
    /// octets, numerically below n) raised to e; `size()` octets out.
    pub fn encrypt_raw(&self, msg: &[u8]) -> Result<Vec<u8>, Rc> {
        let k = self.size();
        if msg.len() > k {
            return Err(Rc::VALUE);
        }
        let m = BigUint::from_bytes_be(msg);
        if &m >= self.0.n() {
            return Err(Rc::VALUE);
        }
        let c = rsa_encrypt(&self.0, &m).map_err(|_| Rc::VALUE)?;
        Ok(to_bytes(&c, k))
    }

    /// The DER SubjectPublicKeyInfo (rsaEncryption, RFC 8017 RSAPublicKey), for certificates.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, Rc> {
        self.0
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|_| Rc::FAILURE)
    }
}

impl RsaPrivate {
    /// Rebuilds a private key from the public modulus and exponent (0 means 65537) and one
    /// prime (what a TPM keeps in TPMT_SENSITIVE). `BINDING` when the prime does not factor
    /// the modulus into two distinct factors that make a valid key.
    pub fn from_prime(modulus: &[u8], exponent: u32, p: &[u8]) -> Result<RsaPrivate, Rc> {
        let public = RsaPublic::new(modulus, exponent)?;
        let n = public.0.n();
        let p = BigUint::from_bytes_be(p);
        if p <= BigUint::from(1u8) || &p >= n {
            return Err(Rc::BINDING);
        }
        let q = n / &p;
        if &(&q * &p) != n {
            return Err(Rc::BINDING);
        }
        RsaPrivateKey::from_p_q(p, q, public.0.e().clone())
            .map(RsaPrivate::wrap)
            .map_err(|_| Rc::BINDING)
    }

    fn wrap(key: RsaPrivateKey) -> RsaPrivate {
        RsaPrivate(key, OnceLock::new())
    }

    /// The key in OpenSSL (n, e, d, p, q and the CRT values), made once.
    fn openssl(&self) -> Result<&openssl::rsa::Rsa<openssl::pkey::Private>, Rc> {
        self.1
            .get_or_init(|| {
                use openssl::bn::BigNum;
                let k = &self.0;
                let [p, q] = k.primes() else { return None };
                let one = BigUint::from(1u8);
                let dp = k.d() % (p - &one);
                let dq = k.d() % (q - &one);
                let qinv = num_bigint_dig::ModInverse::mod_inverse(q, p)?.to_biguint()?;
                let bn = |x: &BigUint| BigNum::from_slice(&x.to_bytes_be()).ok();
                openssl::rsa::Rsa::from_private_components(
                    bn(k.n())?,
                    bn(k.e())?,
                    bn(k.d())?,
                    bn(p)?,
                    bn(q)?,
                    bn(&dp)?,
                    bn(&dq)?,
                    bn(&qinv)?,
                )
                .ok()
            })
            .as_ref()
            .ok_or(Rc::FAILURE)
    }

    /// The private operation on `block` (key-size octets, numerically below n): block^d
    /// mod n, key-size octets, in OpenSSL (CRT, constant-time, blinded).
    fn private_op(&self, block: &[u8]) -> Result<Vec<u8>, Rc> {
        let k = self.0.size();
        if block.len() != k || BigUint::from_bytes_be(block) >= *self.0.n() {
            return Err(Rc::VALUE);
        }
        let rsa = self.openssl()?;
        let mut out = vec![0u8; k];
        let n = rsa
            .private_decrypt(block, &mut out, openssl::rsa::Padding::NONE)
            .map_err(|_| Rc::FAILURE)?;
        out.truncate(n);
        left_pad(&out, k).ok_or(Rc::FAILURE)
    }

    pub fn public(&self) -> RsaPublic {
        RsaPublic(self.0.to_public_key())
    }

    /// The modulus, big-endian, key-size octets.
    pub fn modulus(&self) -> Vec<u8> {
        to_bytes(self.0.n(), self.0.size())
    }

    /// The prime p (the first prime of derivation v1, or the one given to
    /// [`from_prime`](Self::from_prime)), big-endian, half the key size in octets when it fits.
    pub fn prime(&self) -> Vec<u8> {
        match self.0.primes().first() {
            Some(p) => {
                let bytes = p.to_bytes_be();
                left_pad(&bytes, self.0.size() / 2).unwrap_or(bytes)
            }
            None => Vec::new(),
        }
    }

    /// RSASSA-PKCS1-v1_5 signature over `digest` (a `hash` digest): key-size octets.
    pub fn sign_pkcs1v15(&self, hash: HashAlg, digest: &[u8]) -> Result<Vec<u8>, Rc> {
        check_digest(hash, digest)?;
        let em = emsa_pkcs1v15(hash, digest, self.0.size())?;
        self.private_op(&em)
    }

    /// RSASSA-PSS signature over `digest` with MGF1(`hash`) and a salt as long as the digest
    /// (as TPMs do), shortened only when the key is too small for that (emLen - hLen - 2).
    /// The salt (and RSA blinding) come from `rng`. OpenSSL verifies these with
    /// `-pkeyopt rsa_pss_saltlen:digest` (or `auto`, its default when verifying); tpm2-tools
    /// does the same.
    pub fn sign_pss(
        &self,
        hash: HashAlg,
        digest: &[u8],
        rng: &mut dyn ByteSource,
    ) -> Result<Vec<u8>, Rc> {
        check_digest(hash, digest)?;
        let em_bits = self.0.n().bits() - 1;
        let em_len = em_bits.div_ceil(8);
        let room = em_len.checked_sub(hash.size() + 2).ok_or(Rc::KEY_SIZE)?;
        let mut salt = vec![0u8; hash.size().min(room)];
        rng.fill(&mut salt);
        let em = emsa_pss(hash, digest, &salt, em_bits)?;
        self.private_op(&left_pad(&em, self.0.size()).ok_or(Rc::FAILURE)?)
    }

    /// RSAES-OAEP decryption (`hash` for the label and MGF1). `ct` must be exactly the key
    /// size (`SIZE`); every decryption failure is the same `VALUE`.
    pub fn decrypt_oaep(&self, hash: HashAlg, label: &[u8], ct: &[u8]) -> Result<Vec<u8>, Rc> {
        self.check_ciphertext(ct)?;
        // Labels are held to what encryption takes (UTF-8), so both directions agree.
        std::str::from_utf8(label).map_err(|_| Rc::VALUE)?;
        if BigUint::from_bytes_be(ct) >= *self.0.n() {
            return Err(Rc::VALUE);
        }
        let md = match hash {
            HashAlg::Sha1 => openssl::md::Md::sha1(),
            HashAlg::Sha256 => openssl::md::Md::sha256(),
            HashAlg::Sha384 => openssl::md::Md::sha384(),
            HashAlg::Sha512 => openssl::md::Md::sha512(),
        };
        let pkey =
            openssl::pkey::PKey::from_rsa(self.openssl()?.clone()).map_err(|_| Rc::FAILURE)?;
        let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&pkey).map_err(|_| Rc::FAILURE)?;
        ctx.decrypt_init().map_err(|_| Rc::FAILURE)?;
        ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
            .and_then(|()| ctx.set_rsa_oaep_md(md))
            .and_then(|()| ctx.set_rsa_mgf1_md(md))
            .map_err(|_| Rc::FAILURE)?;
        if !label.is_empty() {
            ctx.set_rsa_oaep_label(label).map_err(|_| Rc::FAILURE)?;
        }
        let mut out = Vec::new();
        ctx.decrypt_to_vec(ct, &mut out).map_err(|_| Rc::VALUE)?;
        Ok(out)
    }

    /// RSAES-PKCS1-v1_5 decryption. `ct` must be exactly the key size (`SIZE`).
    pub fn decrypt_pkcs1(&self, ct: &[u8]) -> Result<Vec<u8>, Rc> {
        self.check_ciphertext(ct)?;
        let em = self.private_op(ct)?;
        eme_pkcs1v15_decode(&em).ok_or(Rc::VALUE)
    }

    /// Raw RSA (TPM_ALG_NULL scheme): `ct` (exactly key-size octets, numerically below n)
    /// raised to d; key-size octets out.
    pub fn decrypt_raw(&self, ct: &[u8]) -> Result<Vec<u8>, Rc> {
        self.check_ciphertext(ct)?;
        self.private_op(ct)
    }

    /// PKCS#8 PEM of the key, for tests that hand it to OpenSSL.
    #[cfg(test)]
    pub(super) fn to_pkcs8_pem(&self) -> String {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        self.0.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    fn check_ciphertext(&self, ct: &[u8]) -> Result<(), Rc> {
        if ct.len() == self.0.size() {
            Ok(())
        } else {
            Err(Rc::SIZE)
        }
    }
}

/// `x` big-endian in `size` octets (more if it does not fit, which callers rule out).
fn to_bytes(x: &BigUint, size: usize) -> Vec<u8> {
    let bytes = x.to_bytes_be();
    left_pad(&bytes, size).unwrap_or(bytes)
}

#[cfg(test)]
#[path = "rsa_tests.rs"]
mod tests;
