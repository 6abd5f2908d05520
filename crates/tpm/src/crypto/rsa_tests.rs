use std::sync::OnceLock;

use super::*;
use crate::crypto::KdfStream;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

/// A deterministic stand-in for the DRBG.
fn test_rng(tag: &[u8]) -> KdfStream {
    KdfStream::new(HashAlg::Sha256, b"test rng seed", tag, b"", b"")
}

/// The KdfStream that the pinned derivation vectors use.
fn pinned_stream(context: &[u8]) -> KdfStream {
    let seed: Vec<u8> = (0u8..32).collect();
    KdfStream::new(
        HashAlg::Sha256,
        &seed,
        b"trustlaunch derivation v1 test\0",
        context,
        b"",
    )
}

fn key2048() -> &'static RsaPrivate {
    static KEY: OnceLock<RsaPrivate> = OnceLock::new();
    KEY.get_or_init(|| generate(2048, 0, &mut pinned_stream(b"RSA-2048")).unwrap())
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(HashAlg::Sha256.digest(&[data]))
}

/// Odd primes below 1000, by trial division (independent of the module's sieve).
fn small_odd_primes() -> Vec<u32> {
    (3u32..1000)
        .step_by(2)
        .filter(|n| {
            (3..*n)
                .step_by(2)
                .take_while(|d| d * d <= *n)
                .all(|d| n % d > 0)
        })
        .collect()
}

/// Checks the derivation-v1 definition for a prime found in the first window of a draw:
/// `x` is the smallest prime ≥ `c` (the draw with its top two bits and low bit set), within
/// the window. Primality is judged here without the module's sieve: trial division by the
/// odd primes below 1000 (exact), then num-bigint-dig's test.
fn assert_smallest_prime_from(draw: &[u8], x: &BigUint) {
    let mut c = draw.to_vec();
    c[0] |= 0xC0;
    *c.last_mut().unwrap() |= 1;
    let c = BigUint::from_bytes_be(&c);
    assert!(x >= &c, "prime below its draw");
    assert!(
        x < &(&c + BigUint::from(2 * WINDOW)),
        "prime beyond the window"
    );
    let small = small_odd_primes();
    let mut y = c;
    while &y < x {
        let trial_composite = small
            .iter()
            .any(|p| (&y % BigUint::from(*p)) == BigUint::from(0u8));
        assert!(
            trial_composite || !probably_prime(&y, 1),
            "a smaller prime {y:x} was skipped"
        );
        y += 2u32;
    }
    assert!(probably_prime(x, 20));
}

/// Checks that a key is a consistent RSA key: n = p·q with p, q distinct primes of half the
/// size, and that it signs and verifies.
fn assert_valid_key(key: &RsaPrivate, bits: usize) {
    let n = BigUint::from_bytes_be(&key.modulus());
    let p = BigUint::from_bytes_be(&key.prime());
    assert_eq!(n.bits(), bits);
    assert_eq!(p.bits(), bits / 2);
    assert_eq!(&n % &p, BigUint::from(0u8));
    let q = &n / &p;
    assert_ne!(p, q);
    assert!(probably_prime(&p, 20) && probably_prime(&q, 20));
    let digest = HashAlg::Sha256.digest(&[b"message"]);
    let sig = key.sign_pkcs1v15(HashAlg::Sha256, &digest).unwrap();
    key.public()
        .verify_pkcs1v15(HashAlg::Sha256, &digest, &sig)
        .unwrap();
}

// ---- Derivation v1 ---------------------------------------------------------------------

/// Pins derivation v1 for RSA-2048. These values must never change: if this test fails,
/// every primary key (EK, SRK) derived from an existing seed would change across an upgrade.
#[test]
fn derivation_v1_rsa_2048_is_pinned() {
    let key = key2048();
    assert_eq!(
        sha256_hex(&key.modulus()),
        "ba26fb689c5a8e96f9399386ab6c5e61e8920c12e1451a1081dee50e04dd683a",
        "derivation v1 changed (RSA-2048 modulus)"
    );
    assert_eq!(
        sha256_hex(&key.prime()),
        "40711c8fb3dcbe2c491b6e3847d0e62b600855b47842764ad73688c4ad053b1d",
        "derivation v1 changed (RSA-2048 prime)"
    );
    assert_valid_key(key, 2048);
    // The definition, checked independently of the sieve: p comes from the first draw of
    // 128 octets and q from the second (for this seed neither needed a redraw).
    let mut stream = pinned_stream(b"RSA-2048");
    let mut draw_p = [0u8; 128];
    let mut draw_q = [0u8; 128];
    stream.fill(&mut draw_p);
    stream.fill(&mut draw_q);
    let n = BigUint::from_bytes_be(&key.modulus());
    let p = BigUint::from_bytes_be(&key.prime());
    assert_smallest_prime_from(&draw_p, &p);
    assert_smallest_prime_from(&draw_q, &(&n / &p));
}

/// Pins derivation v1 for RSA-3072 (see the 2048 test: these values must never change).
#[test]
fn derivation_v1_rsa_3072_is_pinned() {
    let key = generate(3072, 0, &mut pinned_stream(b"RSA-3072")).unwrap();
    assert_eq!(
        sha256_hex(&key.modulus()),
        "47f75fa31b0d942b2342e0ec25477d1888444527a86f75ce4c029292aaf903a0",
        "derivation v1 changed (RSA-3072 modulus)"
    );
    assert_valid_key(&key, 3072);
}

#[test]
fn generation_is_deterministic_and_seed_dependent() {
    let again = generate(2048, 65537, &mut pinned_stream(b"RSA-2048")).unwrap();
    assert_eq!(
        again.modulus(),
        key2048().modulus(),
        "65537 is the same as 0"
    );
    let other = generate(2048, 0, &mut pinned_stream(b"another context")).unwrap();
    assert_ne!(other.modulus(), key2048().modulus());
}

#[test]
fn generation_rejects_sizes_and_exponents() {
    let mut src = test_rng(b"sizes");
    for bits in [0u16, 512, 1024, 2047, 2049, 4096] {
        assert_eq!(
            generate(bits, 0, &mut src).unwrap_err(),
            Rc::KEY_SIZE,
            "{bits}"
        );
    }
    // 0 or a prime ≥ 65537 (TPM_RC_RANGE otherwise, as the reference implementation).
    for e in [
        1u32,
        3,
        17,
        65535,
        65536,
        65541,    /* = 3 · 21847 */
        u32::MAX, /* 3·5·17·257·65537 */
    ] {
        assert_eq!(generate(2048, e, &mut src).unwrap_err(), Rc::RANGE, "{e}");
    }
    assert_eq!(generation_exponent(0), Ok(65537));
    assert_eq!(generation_exponent(65537), Ok(65537));
    assert_eq!(generation_exponent(65539), Ok(65539)); // prime
}

#[test]
fn non_default_exponent_makes_a_working_key() {
    let key = generate(2048, 65539, &mut test_rng(b"e=65539")).unwrap();
    assert_eq!(key.public().exponent(), 65539);
    assert_valid_key(&key, 2048);
}

#[test]
fn a_window_without_prime_draws_again() {
    // With windows of 8 odd candidates most draws hold no prime, so the search redraws.
    let mut draws = 0;
    let mut inner = test_rng(b"redraw");
    let mut src = |out: &mut [u8]| {
        draws += 1;
        inner.fill(out)
    };
    let key = generate_with(2048, 0, &mut src, 8, 1000).unwrap();
    assert!(draws > 2, "expected redraws, got {draws} draws");
    assert_valid_key(&key, 2048);
}

#[test]
fn a_source_that_repeats_itself_gives_no_result() {
    // Every draw is the same, so q would equal p: the search gives up after max_draws.
    let mut zeros = |out: &mut [u8]| out.fill(0);
    assert_eq!(
        generate_with(2048, 0, &mut zeros, WINDOW, 3).unwrap_err(),
        Rc::NO_RESULT
    );
}

#[test]
fn sieve_primes_are_the_odd_primes_below_2_16() {
    let primes = sieve_primes();
    assert_eq!(primes.len(), 6541); // π(2^16) = 6542, less the prime 2
    let is_prime = |n: u32| {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| n.checked_rem(d) != Some(0))
    };
    assert!(primes.iter().all(|p| is_prime(*p)));
    assert_eq!(primes.first(), Some(&3));
    assert_eq!(primes.last(), Some(&65521));
}

#[test]
fn sieve_marks_exactly_the_candidates_with_small_factors() {
    let mut start = [0u8; 128];
    test_rng(b"sieve").fill(&mut start);
    start[127] |= 1;
    let composite = sieve(&start, 300);
    let base = BigUint::from_bytes_be(&start);
    let primes = sieve_primes();
    for (j, marked) in composite.iter().enumerate() {
        let x = &base + BigUint::from(2 * j);
        let has_factor = primes
            .iter()
            .any(|p| (&x % BigUint::from(*p)) == BigUint::from(0u8));
        assert_eq!(*marked, has_factor, "candidate {j}");
    }
}

#[test]
fn rem_u32_matches_biguint() {
    let mut x = [0u8; 131]; // not a multiple of 4 octets
    test_rng(b"rem").fill(&mut x);
    for m in [1u32, 2, 3, 65521, 65521 * 65519, u32::MAX] {
        let expected = &BigUint::from_bytes_be(&x) % BigUint::from(m);
        assert_eq!(BigUint::from(rem_u32(&x, m)), expected, "{m}");
    }
    assert_eq!(rem_u32(&[], 7), 0);
}

// ---- Keys from their parts ---------------------------------------------------------------

#[test]
fn from_prime_rebuilds_the_key() {
    let key = key2048();
    let rebuilt = RsaPrivate::from_prime(&key.modulus(), 0, &key.prime()).unwrap();
    assert_eq!(rebuilt.prime(), key.prime());
    let digest = HashAlg::Sha384.digest(&[b"x"]);
    // PKCS#1 v1.5 signatures are deterministic: the same key gives the same signature.
    assert_eq!(
        rebuilt.sign_pkcs1v15(HashAlg::Sha384, &digest).unwrap(),
        key.sign_pkcs1v15(HashAlg::Sha384, &digest).unwrap()
    );
    // The other prime works too, and is then the one reported.
    let n = BigUint::from_bytes_be(&key.modulus());
    let q = (&n / BigUint::from_bytes_be(&key.prime())).to_bytes_be();
    let from_q = RsaPrivate::from_prime(&key.modulus(), 65537, &q).unwrap();
    assert_eq!(from_q.prime(), q);
    assert_eq!(from_q.modulus(), key.modulus());
}

#[test]
fn from_prime_rejects_what_does_not_factor() {
    let key = key2048();
    let n = key.modulus();
    let mut wrong = key.prime();
    *wrong.last_mut().unwrap() ^= 2;
    for p in [&wrong[..], &[], &[0], &[1], &[2], &n[..]] {
        assert_eq!(
            RsaPrivate::from_prime(&n, 0, p).unwrap_err(),
            Rc::BINDING,
            "{}",
            hex::encode(p)
        );
    }
    assert_eq!(
        RsaPrivate::from_prime(&n[..100], 0, &key.prime()).unwrap_err(),
        Rc::KEY_SIZE
    );
}

#[test]
fn public_key_checks() {
    let n = key2048().modulus();
    let public = RsaPublic::new(&n, 0).unwrap();
    assert_eq!(public.exponent(), 65537);
    assert_eq!(public.bits(), 2048);
    assert_eq!(public.size(), 256);
    assert_eq!(public.modulus(), n);
    assert_eq!(public, key2048().public());
    // Leading zero octets are fine.
    let mut padded = vec![0, 0];
    padded.extend_from_slice(&n);
    assert_eq!(RsaPublic::new(&padded, 0).unwrap(), public);
    assert_eq!(RsaPublic::new(&[], 0).unwrap_err(), Rc::KEY_SIZE);
    assert_eq!(RsaPublic::new(&n[..64], 0).unwrap_err(), Rc::KEY_SIZE);
    assert_eq!(RsaPublic::new(&[0xFF; 513], 0).unwrap_err(), Rc::KEY_SIZE);
    let mut even = n.clone();
    *even.last_mut().unwrap() &= 0xFE;
    assert_eq!(RsaPublic::new(&even, 0).unwrap_err(), Rc::KEY);
    for e in [1u32, 2, 65536] {
        assert_eq!(RsaPublic::new(&n, e).unwrap_err(), Rc::KEY, "{e}");
    }
    assert_eq!(RsaPublic::new(&n, 3).unwrap().exponent(), 3);
}

// ---- Signatures --------------------------------------------------------------------------

#[test]
fn pkcs1v15_sign_and_verify() {
    let key = key2048();
    let public = key.public();
    for hash in HashAlg::ALL {
        let digest = hash.digest(&[b"to be signed"]);
        let sig = key.sign_pkcs1v15(hash, &digest).unwrap();
        assert_eq!(sig.len(), 256);
        public.verify_pkcs1v15(hash, &digest, &sig).unwrap();
        let mut other = digest.clone();
        other[0] ^= 1;
        assert_eq!(
            public.verify_pkcs1v15(hash, &other, &sig).unwrap_err(),
            Rc::SIGNATURE
        );
        let mut bad = sig.clone();
        bad[100] ^= 1;
        assert_eq!(
            public.verify_pkcs1v15(hash, &digest, &bad).unwrap_err(),
            Rc::SIGNATURE
        );
        assert_eq!(
            public
                .verify_pkcs1v15(hash, &digest, &sig[1..])
                .unwrap_err(),
            Rc::SIGNATURE
        );
        assert_eq!(
            public.verify_pkcs1v15(hash, &digest, &[]).unwrap_err(),
            Rc::SIGNATURE
        );
        assert_eq!(key.sign_pkcs1v15(hash, &digest[1..]).unwrap_err(), Rc::SIZE);
    }
    // A signature made with another hash does not verify.
    let d256 = HashAlg::Sha256.digest(&[b"m"]);
    let sig = key.sign_pkcs1v15(HashAlg::Sha256, &d256).unwrap();
    let d384 = HashAlg::Sha384.digest(&[b"m"]);
    assert!(public
        .verify_pkcs1v15(HashAlg::Sha384, &d384, &sig)
        .is_err());
}

#[test]
fn pss_sign_and_verify() {
    let key = key2048();
    let public = key.public();
    let mut rng = test_rng(b"pss");
    for hash in HashAlg::ALL {
        let digest = hash.digest(&[b"to be signed"]);
        let sig = key.sign_pss(hash, &digest, &mut rng).unwrap();
        public.verify_pss(hash, &digest, &sig).unwrap();
        // The salt is as long as the digest.
        let scheme = with_digest!(hash, D => Pss::new_with_salt::<D>(hash.size()));
        public.0.verify(scheme, &digest, &sig).unwrap();
        // Salted: two signatures differ.
        assert_ne!(key.sign_pss(hash, &digest, &mut rng).unwrap(), sig);
        let mut other = digest.clone();
        other[5] ^= 0x80;
        assert_eq!(
            public.verify_pss(hash, &other, &sig).unwrap_err(),
            Rc::SIGNATURE
        );
        let mut bad = sig.clone();
        bad[7] ^= 4;
        assert_eq!(
            public.verify_pss(hash, &digest, &bad).unwrap_err(),
            Rc::SIGNATURE
        );
        // A PKCS#1 v1.5 signature is not a PSS signature.
        let v15 = key.sign_pkcs1v15(hash, &digest).unwrap();
        assert_eq!(
            public.verify_pss(hash, &digest, &v15).unwrap_err(),
            Rc::SIGNATURE
        );
    }
}

#[test]
fn pss_verification_accepts_any_salt_length() {
    let key = key2048();
    let public = key.public();
    let hash = HashAlg::Sha256;
    let digest = hash.digest(&[b"salted"]);
    // emLen - hLen - 2 = 256 - 32 - 2 is the longest salt a 2048-bit key allows.
    for salt_len in [0usize, 1, 20, 32, 64, 222] {
        let sig = key
            .0
            .sign_with_rng(
                &mut Rng(&mut test_rng(b"salt")),
                Pss::new_with_salt::<sha2::Sha256>(salt_len),
                &digest,
            )
            .unwrap();
        public.verify_pss(hash, &digest, &sig).unwrap();
    }
}

#[test]
fn signature_inputs_never_panic() {
    let key = key2048();
    let public = key.public();
    let digest = HashAlg::Sha256.digest(&[b""]);
    let n = key.modulus();
    let all_ff = vec![0xFF; 256];
    for sig in [
        &[][..],
        &[0u8; 256][..],
        &n[..],
        &all_ff[..],
        &[1u8; 300][..],
    ] {
        assert!(public.verify_pss(HashAlg::Sha256, &digest, sig).is_err());
        assert!(public
            .verify_pkcs1v15(HashAlg::Sha256, &digest, sig)
            .is_err());
    }
    assert_eq!(
        key.sign_pss(HashAlg::Sha256, &[], &mut test_rng(b"x"))
            .unwrap_err(),
        Rc::SIZE
    );
    assert_eq!(
        public.verify_pss(HashAlg::Sha1, &digest, &n).unwrap_err(),
        Rc::SIZE
    );
}

// ---- Encryption --------------------------------------------------------------------------

/// RSAES-OAEP Example 1.1 from RSA Laboratories' PKCS #1 v2.1 test vectors (oaep-vect.txt,
/// SHA-1, MGF1-SHA-1, empty label): encrypting with the published seed gives the published
/// ciphertext, and the key rebuilt from n and p decrypts it.
#[test]
fn oaep_rsa_labs_example_1_1() {
    let n = unhex(
        "a8 b3 b2 84 af 8e b5 0b 38 70 34 a8 60 f1 46 c4 91 9f 31 87 63 cd 6c 55 98 c8 ae 48 11 a1 e0 ab
         c4 c7 e0 b0 82 d6 93 a5 e7 fc ed 67 5c f4 66 85 12 77 2c 0c bc 64 a7 42 c6 c6 30 f5 33 c8 cc 72
         f6 2a e8 33 c4 0b f2 58 42 e9 84 bb 78 bd bf 97 c0 10 7d 55 bd b6 62 f5 c4 e0 fa b9 84 5c b5 14
         8e f7 39 2d d3 aa ff 93 ae 1e 6b 66 7b b3 d4 24 76 16 d4 f5 ba 10 d4 cf d2 26 de 88 d3 9f 16 fb",
    );
    let p = unhex(
        "d3 27 37 e7 26 7f fe 13 41 b2 d5 c0 d1 50 a8 1b 58 6f b3 13 2b ed 2f 8d 52 62 86 4a 9c b9 f3 0a
         f3 8b e4 48 59 8d 41 3a 17 2e fb 80 2c 21 ac f1 c1 1c 52 0c 2f 26 a4 71 dc ad 21 2e ac 7c a3 9d",
    );
    let message = unhex(
        "66 28 19 4e 12 07 3d b0 3b a9 4c da 9e f9 53 23 97 d5 0d ba 79 b9 87 00 4a fe fe 34",
    );
    let seed = unhex("18 b7 76 ea 21 06 9d 69 77 6a 33 e9 6b ad 48 e1 dd a0 a5 ef");
    let ciphertext = unhex(
        "35 4f e6 7b 4a 12 6d 5d 35 fe 36 c7 77 79 1a 3f 7b a1 3d ef 48 4e 2d 39 08 af f7 22 fa d4 68 fb
         21 69 6d e9 5d 0b e9 11 c2 d3 17 4f 8a fc c2 01 03 5f 7b 6d 8e 69 40 2d e5 45 16 18 c2 1a 53 5f
         a9 d7 bf c5 b8 dd 9f c2 43 f8 cf 92 7d b3 13 22 d6 e8 81 ea a9 1a 99 61 70 e6 57 a0 5a 26 64 26
         d9 8c 88 00 3f 84 77 c1 22 70 94 a0 d9 fa 1e 8c 40 24 30 9c e1 ec cc b5 21 00 35 d4 7a c7 2e 8a",
    );
    let public = RsaPublic::new(&n, 0x010001).unwrap();
    let mut fixed = |out: &mut [u8]| out.copy_from_slice(&seed);
    let ct = public
        .encrypt_oaep(HashAlg::Sha1, b"", &message, &mut fixed)
        .unwrap();
    assert_eq!(hex::encode(&ct), hex::encode(&ciphertext));
    let key = RsaPrivate::from_prime(&n, 0, &p).unwrap();
    assert_eq!(
        key.decrypt_oaep(HashAlg::Sha1, b"", &ciphertext).unwrap(),
        message
    );
}

#[test]
fn oaep_round_trips_with_tpm_labels() {
    let key = key2048();
    let public = key.public();
    let mut rng = test_rng(b"oaep");
    for hash in HashAlg::ALL {
        for label in [&b""[..], b"IDENTITY\0", b"DUPLICATE\0", b"SECRET\0"] {
            let secret = [0x5Au8; 32];
            let ct = public.encrypt_oaep(hash, label, &secret, &mut rng).unwrap();
            assert_eq!(ct.len(), 256);
            assert_eq!(key.decrypt_oaep(hash, label, &ct).unwrap(), secret);
        }
        // The label is bound: with or without the NUL is a different label.
        let ct = public
            .encrypt_oaep(hash, b"IDENTITY\0", b"x", &mut rng)
            .unwrap();
        assert_eq!(
            key.decrypt_oaep(hash, b"IDENTITY", &ct).unwrap_err(),
            Rc::VALUE
        );
        // Empty messages are fine; over-long ones are VALUE.
        let ct = public.encrypt_oaep(hash, b"", b"", &mut rng).unwrap();
        assert_eq!(key.decrypt_oaep(hash, b"", &ct).unwrap(), b"");
        let too_long = vec![1u8; 256 - 2 * hash.size() - 1];
        assert_eq!(
            public
                .encrypt_oaep(hash, b"", &too_long, &mut rng)
                .unwrap_err(),
            Rc::VALUE
        );
    }
    // Labels must be UTF-8 (the rsa crate holds them as strings).
    assert_eq!(
        public
            .encrypt_oaep(HashAlg::Sha256, &[0xFF, 0], b"x", &mut rng)
            .unwrap_err(),
        Rc::VALUE
    );
}

#[test]
fn pkcs1_and_raw_round_trips() {
    let key = key2048();
    let public = key.public();
    let mut rng = test_rng(b"pkcs1");
    let ct = public.encrypt_pkcs1(b"pkcs1 message", &mut rng).unwrap();
    assert_eq!(key.decrypt_pkcs1(&ct).unwrap(), b"pkcs1 message");

    let ct = public.encrypt_raw(b"raw").unwrap();
    assert_eq!(ct.len(), 256);
    let mut expected = vec![0u8; 253];
    expected.extend_from_slice(b"raw");
    assert_eq!(key.decrypt_raw(&ct).unwrap(), expected);
    // Raw RSA is textbook RSA: m^e mod n, checked with plain big-number arithmetic.
    let m = BigUint::from_bytes_be(b"raw");
    let n = BigUint::from_bytes_be(&key.modulus());
    assert_eq!(
        BigUint::from_bytes_be(&ct),
        m.modpow(&BigUint::from(65537u32), &n)
    );
    assert_eq!(public.encrypt_raw(&key.modulus()).unwrap_err(), Rc::VALUE);
    assert_eq!(public.encrypt_raw(&[1u8; 257]).unwrap_err(), Rc::VALUE);
    assert_eq!(public.encrypt_raw(&[]).unwrap(), vec![0u8; 256]);
}

#[test]
fn decryption_inputs_never_panic() {
    let key = key2048();
    let n = key.modulus();
    for ct in [&[][..], &[0u8; 255][..], &[0u8; 257][..], &n[1..]] {
        assert_eq!(key.decrypt_raw(ct).unwrap_err(), Rc::SIZE);
        assert_eq!(key.decrypt_pkcs1(ct).unwrap_err(), Rc::SIZE);
        assert_eq!(
            key.decrypt_oaep(HashAlg::Sha256, b"", ct).unwrap_err(),
            Rc::SIZE
        );
    }
    let all_ff = [0xFFu8; 256];
    for ct in [&n[..], &all_ff[..]] {
        assert_eq!(key.decrypt_raw(ct).unwrap_err(), Rc::VALUE);
        assert_eq!(key.decrypt_pkcs1(ct).unwrap_err(), Rc::VALUE);
        assert_eq!(
            key.decrypt_oaep(HashAlg::Sha256, b"", ct).unwrap_err(),
            Rc::VALUE
        );
    }
    // Well-formed size, garbage padding.
    let junk = [0x01u8; 256];
    assert_eq!(key.decrypt_pkcs1(&junk).unwrap_err(), Rc::VALUE);
    assert_eq!(
        key.decrypt_oaep(HashAlg::Sha1, b"", &junk).unwrap_err(),
        Rc::VALUE
    );
    assert_eq!(key.decrypt_raw(&[0u8; 256]).unwrap(), vec![0u8; 256]);
}

#[test]
fn spki_der_holds_the_key() {
    let der = key2048().public().to_spki_der().unwrap();
    // SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { RSAPublicKey } }
    assert_eq!(der[0], 0x30);
    let rsa_encryption_oid = unhex("06 09 2a 86 48 86 f7 0d 01 01 01");
    assert!(der
        .windows(rsa_encryption_oid.len())
        .any(|w| w == rsa_encryption_oid));
    assert!(der
        .windows(256)
        .any(|w| w == key2048().modulus().as_slice()));
}

#[test]
fn debug_output_hides_the_private_key() {
    let s = format!("{:?}", key2048());
    assert!(s.contains("2048"));
    assert!(s.len() < 64, "{s}");
}

/// Keys OpenSSL generates, of sizes derivation does not make (the modulus bit length decides
/// the PSS encoding's length and its top mask), rebuilt from their modulus and first prime.
fn openssl_key(bits: u32) -> RsaPrivate {
    let k = openssl::rsa::Rsa::generate(bits).unwrap();
    let p = k.p().unwrap().to_vec();
    RsaPrivate::from_prime(&k.n().to_vec(), 65537, &p).unwrap()
}

#[test]
fn private_operation_is_textbook_rsa() {
    // OpenSSL's CRT result against m^d mod n in plain big-number arithmetic.
    for key in [key2048().clone(), openssl_key(1031), openssl_key(2049)] {
        let n = BigUint::from_bytes_be(&key.modulus());
        let k = key.0.size();
        for seed in [1u8, 0x5a, 0xff] {
            let mut block = vec![seed; k];
            block[0] = 0;
            let c = BigUint::from_bytes_be(&block);
            let expected = to_bytes(&c.modpow(key.0.d(), &n), k);
            assert_eq!(key.decrypt_raw(&block).unwrap(), expected);
        }
    }
}

#[test]
fn pkcs1v15_signatures_equal_the_rsa_crates() {
    // PKCS#1 v1.5 signing is deterministic: the same octets as the rsa crate's own signer.
    for key in [key2048().clone(), openssl_key(1031), openssl_key(3072)] {
        for hash in HashAlg::ALL {
            let digest = hash.digest(&[b"sign me"]);
            let scheme = with_digest!(hash, D => Pkcs1v15Sign::new::<D>());
            let theirs = key.0.sign(scheme, &digest).unwrap();
            assert_eq!(
                key.sign_pkcs1v15(hash, &digest).unwrap(),
                theirs,
                "{hash:?}"
            );
        }
    }
}

#[test]
fn pss_signatures_verify_for_every_modulus_length() {
    // 1031 and 2049 bits: the encoded message is one octet shorter than the modulus and its
    // top bits are masked; 1030: seven masked bits.
    let mut rng = test_rng(b"pss lengths");
    for key in [
        openssl_key(1030),
        openssl_key(1031),
        openssl_key(2049),
        key2048().clone(),
    ] {
        let public = key.public();
        for hash in HashAlg::ALL {
            let digest = hash.digest(&[b"pss"]);
            let Ok(sig) = key.sign_pss(hash, &digest, &mut rng) else {
                // SHA-512 with a 1030-bit key: no room for the salt (KEY_SIZE).
                assert!(key.0.n().bits() < 1040 && hash == HashAlg::Sha512);
                continue;
            };
            assert_eq!(sig.len(), key.0.size());
            let em_len = (key.0.n().bits() - 1).div_ceil(8);
            let salt = hash.size().min(em_len - hash.size() - 2);
            let scheme = with_digest!(hash, D => Pss::new_with_salt::<D>(salt));
            public.0.verify(scheme, &digest, &sig).unwrap();
            public.verify_pss(hash, &digest, &sig).unwrap();
        }
    }
}

#[test]
fn pkcs1_decryption_checks_the_padding() {
    let key = key2048();
    let public = key.public();
    // A block of key size: two octets, nonzero padding, the separator if asked, `msg`.
    let block = |first: u8, second: u8, sep: bool, msg: &[u8]| {
        let mut em = vec![first, second];
        em.resize(256 - usize::from(sep) - msg.len(), 0x42);
        if sep {
            em.push(0);
        }
        em.extend_from_slice(msg);
        public.encrypt_raw(&em).unwrap()
    };
    // Well formed: the message comes back, also an empty one.
    assert_eq!(
        key.decrypt_pkcs1(&block(0, 2, true, b"hello")).unwrap(),
        b"hello"
    );
    assert_eq!(key.decrypt_pkcs1(&block(0, 2, true, b"")).unwrap(), b"");
    // Wrong first or second octet, or no separator.
    assert_eq!(
        key.decrypt_pkcs1(&block(0, 1, true, b"x")).unwrap_err(),
        Rc::VALUE
    );
    assert_eq!(
        key.decrypt_pkcs1(&block(1, 2, true, b"x")).unwrap_err(),
        Rc::VALUE
    );
    assert_eq!(
        key.decrypt_pkcs1(&block(0, 2, false, b"xyz")).unwrap_err(),
        Rc::VALUE
    );
    // A padding string shorter than eight octets: a zero in the third to ninth octet.
    let mut short = vec![0u8, 2, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0];
    short.resize(256, 0x33);
    assert_eq!(
        key.decrypt_pkcs1(&public.encrypt_raw(&short).unwrap())
            .unwrap_err(),
        Rc::VALUE
    );
    // Exactly eight octets of padding is enough.
    let mut eight = vec![0u8, 2, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0];
    eight.resize(256, 0x33);
    assert_eq!(
        key.decrypt_pkcs1(&public.encrypt_raw(&eight).unwrap())
            .unwrap(),
        vec![0x33u8; 256 - 11]
    );
}

#[test]
fn oaep_decryption_agrees_with_openssl_encryption() {
    // Ciphertexts made by OpenSSL (its own OAEP encoder, SHA-256 and a TPM label).
    let key = key2048();
    let n = openssl::bn::BigNum::from_slice(&key.modulus()).unwrap();
    let e = openssl::bn::BigNum::from_u32(65537).unwrap();
    let pkey =
        openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::from_public_components(n, e).unwrap())
            .unwrap();
    for (hash, md) in [
        (HashAlg::Sha1, openssl::md::Md::sha1()),
        (HashAlg::Sha256, openssl::md::Md::sha256()),
        (HashAlg::Sha384, openssl::md::Md::sha384()),
    ] {
        let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&pkey).unwrap();
        ctx.encrypt_init().unwrap();
        ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
            .unwrap();
        ctx.set_rsa_oaep_md(md).unwrap();
        ctx.set_rsa_mgf1_md(md).unwrap();
        ctx.set_rsa_oaep_label(b"IDENTITY\0").unwrap();
        let mut ct = Vec::new();
        ctx.encrypt_to_vec(b"a credential", &mut ct).unwrap();
        assert_eq!(
            key.decrypt_oaep(hash, b"IDENTITY\0", &ct).unwrap(),
            b"a credential"
        );
        assert_eq!(
            key.decrypt_oaep(hash, b"DUPLICATE\0", &ct).unwrap_err(),
            Rc::VALUE
        );
        assert_eq!(key.decrypt_oaep(hash, b"", &ct).unwrap_err(), Rc::VALUE);
    }
}
