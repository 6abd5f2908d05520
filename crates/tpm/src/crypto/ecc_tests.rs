use super::*;
use crate::crypto::KdfStream;
use crate::hash::HashAlg;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

fn test_rng(tag: &[u8]) -> KdfStream {
    KdfStream::new(HashAlg::Sha256, b"test rng seed", tag, b"", b"")
}

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

/// The group orders (FIPS 186-4 D.1.2.3 and D.1.2.4; as `openssl ecparam -param_enc
/// explicit -text` prints them), independent of the curve crates.
fn order(curve: Curve) -> BigUint {
    BigUint::from_bytes_be(&unhex(match curve {
        Curve::P256 => "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
        Curve::P384 => {
            "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"
        }
    }))
}

/// RFC 6979 A.2.5: the P-256 key and its deterministic signature of SHA-256("sample").
const A25_D: &str = "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721";
const A25_UX: &str = "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6";
const A25_UY: &str = "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299";
const A25_R: &str = "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716";
const A25_S: &str = "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8";

// ---- Derivation v1 ---------------------------------------------------------------------

/// Pins derivation v1 for ECC keys. These values must never change: if this test fails,
/// every ECC primary key (EK, SRK) derived from an existing seed would change.
#[test]
fn derivation_v1_ecc_is_pinned() {
    let p256 = generate(Curve::P256, &mut pinned_stream(b"ECC-P256")).unwrap();
    assert_eq!(
        hex::encode(p256.scalar()),
        "a8462e4744fb02c0110cf0d3131044d32d010d6f383c89e076fc73530fedf45b",
        "derivation v1 changed (P-256)"
    );
    let p384 = generate(Curve::P384, &mut pinned_stream(b"ECC-P384")).unwrap();
    assert_eq!(
        hex::encode(p384.scalar()),
        "317533a34034391be1bb0ed012ba55d23498b5b11deae9fc0aed593505a76ebe9af285fb637e692b69b286ba9be64063",
        "derivation v1 changed (P-384)"
    );
}

/// The definition, with independent arithmetic: d = (c mod (n - 1)) + 1 for c the first
/// size + 8 octets of the stream.
#[test]
fn derivation_v1_follows_fips_186_4_b_4_1() {
    for curve in Curve::ALL {
        for context in [&b"a"[..], b"b", b"c"] {
            let key = generate(curve, &mut pinned_stream(context)).unwrap();
            let mut c = vec![0u8; curve.size() + 8];
            pinned_stream(context).fill(&mut c);
            let n = order(curve);
            let d = BigUint::from_bytes_be(&c) % (&n - 1u32) + 1u32;
            assert_eq!(BigUint::from_bytes_be(&key.scalar()), d);
            assert_eq!(key.scalar().len(), curve.size());
        }
    }
    // Extremes of c: 0 gives d = 1; n - 1 gives 1 again; n - 2 gives n - 1.
    for curve in Curve::ALL {
        let n = order(curve);
        let size = curve.size() + 8;
        for (c, d) in [
            (BigUint::from(0u8), BigUint::from(1u8)),
            (&n - 1u32, BigUint::from(1u8)),
            (&n - 2u32, &n - 1u32),
        ] {
            let bytes = left_pad(&c.to_bytes_be(), size).unwrap();
            let mut src = |out: &mut [u8]| out.copy_from_slice(&bytes);
            let key = generate(curve, &mut src).unwrap();
            assert_eq!(BigUint::from_bytes_be(&key.scalar()), d);
        }
    }
}

// ---- Keys ------------------------------------------------------------------------------

#[test]
fn curve_ids() {
    assert_eq!(Curve::from_id(0x0003), Ok(Curve::P256));
    assert_eq!(Curve::from_id(0x0004), Ok(Curve::P384));
    for id in [0u16, 1, 2, 5, 0x10, 0x20, 0xFFFF] {
        assert_eq!(Curve::from_id(id), Err(Rc::CURVE));
    }
    assert_eq!(Curve::P256.id(), 3);
    assert_eq!(Curve::P384.size(), 48);
    assert_eq!(Curve::P384.bits(), 384);
}

#[test]
fn rfc6979_a25_public_key_and_signature() {
    let key = from_scalar(Curve::P256, &unhex(A25_D)).unwrap();
    let public = key.public();
    assert_eq!(hex::encode_upper(public.x()), A25_UX);
    assert_eq!(hex::encode_upper(public.y()), A25_UY);
    let digest = HashAlg::Sha256.digest(&[b"sample"]);
    public
        .verify_ecdsa(&digest, &unhex(A25_R), &unhex(A25_S))
        .unwrap();
    // The same signature with s replaced by n - s also verifies (ECDSA is malleable).
    let n = order(Curve::P256);
    let low_s = (&n - BigUint::from_bytes_be(&unhex(A25_S))).to_bytes_be();
    public.verify_ecdsa(&digest, &unhex(A25_R), &low_s).unwrap();
    let other = HashAlg::Sha256.digest(&[b"samplE"]);
    assert_eq!(
        public
            .verify_ecdsa(&other, &unhex(A25_R), &unhex(A25_S))
            .unwrap_err(),
        Rc::SIGNATURE
    );
}

#[test]
fn scalar_bounds() {
    for curve in Curve::ALL {
        let n = order(curve);
        let size = curve.size();
        let bad = [
            vec![],
            vec![0u8; size],
            n.to_bytes_be(),
            (&n + 1u32).to_bytes_be(),
            vec![0xFF; size],
            vec![1u8; size + 1],
        ];
        for d in bad {
            assert_eq!(
                from_scalar(curve, &d).unwrap_err(),
                Rc::KEY,
                "{curve:?} {}",
                hex::encode(&d)
            );
        }
        let max = from_scalar(curve, &(&n - 1u32).to_bytes_be()).unwrap();
        assert_eq!(BigUint::from_bytes_be(&max.scalar()), &n - 1u32);
        // Short scalars are left-padded; leading zeros beyond the size are fine.
        let one = from_scalar(curve, &[1]).unwrap();
        assert_eq!(one.scalar().len(), size);
        let mut padded = vec![0u8; 3];
        padded.extend(one.scalar());
        assert_eq!(from_scalar(curve, &padded).unwrap().scalar(), one.scalar());
        assert_eq!(format!("{one:?}").matches("Ecc").count(), 1);
        assert!(!format!("{one:?}").contains("01"));
    }
}

#[test]
fn point_validation() {
    for curve in Curve::ALL {
        let key = generate(curve, &mut test_rng(b"points")).unwrap();
        let public = key.public();
        let (x, y) = (public.x(), public.y());
        assert_eq!(x.len(), curve.size());
        assert_eq!(EccPublic::new(curve, &x, &y).unwrap(), public);
        let mut y_off = y.clone();
        *y_off.last_mut().unwrap() ^= 1;
        let size = curve.size();
        let cases: [(&[u8], &[u8]); 6] = [
            (&x, &y_off),
            (&[], &[]),
            (&[0; 48], &[0; 48]),
            (&x, &[]),
            (&[1; 49], &y),
            (&vec![0xFF; size], &y),
        ];
        for (cx, cy) in cases {
            assert_eq!(
                EccPublic::new(curve, cx, cy).unwrap_err(),
                Rc::ECC_POINT,
                "{curve:?} {} {}",
                hex::encode(cx),
                hex::encode(cy)
            );
        }
        // The other curve's point is not on this curve.
        let other = if curve == Curve::P256 {
            Curve::P384
        } else {
            Curve::P256
        };
        assert_eq!(EccPublic::new(other, &x, &y).unwrap_err(), Rc::ECC_POINT);
        // Leading zero octets are accepted.
        let mut x0 = vec![0u8];
        x0.extend_from_slice(&x);
        assert_eq!(EccPublic::new(curve, &x0, &y).unwrap(), public);
    }
}

// ---- ECDSA -----------------------------------------------------------------------------

#[test]
fn ecdsa_sign_and_verify() {
    for curve in Curve::ALL {
        let key = generate(curve, &mut test_rng(b"ecdsa")).unwrap();
        let public = key.public();
        let mut rng = test_rng(b"nonces");
        for hash in HashAlg::ALL {
            let digest = hash.digest(&[b"to be signed"]);
            let (r, s) = key.sign_ecdsa(&digest, &mut rng).unwrap();
            assert_eq!((r.len(), s.len()), (curve.size(), curve.size()));
            public.verify_ecdsa(&digest, &r, &s).unwrap();
            // Hedged nonces: another signature of the same digest differs.
            let (r2, _) = key.sign_ecdsa(&digest, &mut rng).unwrap();
            assert_ne!(r, r2);

            let mut other = digest.clone();
            other[0] ^= 1;
            assert_eq!(
                public.verify_ecdsa(&other, &r, &s).unwrap_err(),
                Rc::SIGNATURE
            );
            let mut bad_r = r.clone();
            bad_r[3] ^= 0x10;
            assert_eq!(
                public.verify_ecdsa(&digest, &bad_r, &s).unwrap_err(),
                Rc::SIGNATURE
            );
            let mut bad_s = s.clone();
            *bad_s.last_mut().unwrap() ^= 1;
            assert_eq!(
                public.verify_ecdsa(&digest, &r, &bad_s).unwrap_err(),
                Rc::SIGNATURE
            );
            assert_eq!(
                public.verify_ecdsa(&digest, &s, &r).unwrap_err(),
                Rc::SIGNATURE
            );
        }
    }
}

#[test]
fn ecdsa_truncates_long_digests_and_pads_short_ones() {
    let key = generate(Curve::P256, &mut test_rng(b"truncate")).unwrap();
    let public = key.public();
    let long = HashAlg::Sha512.digest(&[b"m"]);
    let (r, s) = key.sign_ecdsa(&long, &mut test_rng(b"k")).unwrap();
    // Only the leftmost 256 bits count (FIPS 186-4 6.4).
    public.verify_ecdsa(&long[..32], &r, &s).unwrap();
    let mut tail_changed = long.clone();
    tail_changed[63] ^= 1;
    public.verify_ecdsa(&tail_changed, &r, &s).unwrap();
    // A digest shorter than the order is the same integer with leading zeros.
    let key384 = generate(Curve::P384, &mut test_rng(b"short")).unwrap();
    let sha1 = HashAlg::Sha1.digest(&[b"m"]);
    let (r, s) = key384.sign_ecdsa(&sha1, &mut test_rng(b"k")).unwrap();
    let mut padded = vec![0u8; 28];
    padded.extend_from_slice(&sha1);
    key384.public().verify_ecdsa(&padded, &r, &s).unwrap();
}

#[test]
fn ecdsa_inputs_never_panic() {
    for curve in Curve::ALL {
        let key = generate(curve, &mut test_rng(b"edge")).unwrap();
        let public = key.public();
        let digest = [0x42u8; 32];
        let (r, s) = key.sign_ecdsa(&digest, &mut test_rng(b"k")).unwrap();
        let n = order(curve).to_bytes_be();
        let zero = vec![0u8; curve.size()];
        let too_long = vec![1u8; curve.size() + 1];
        for (cr, cs) in [
            (&zero[..], &s[..]),
            (&r[..], &zero[..]),
            (&n[..], &s[..]),
            (&r[..], &n[..]),
            (&[][..], &[][..]),
            (&too_long[..], &s[..]),
        ] {
            assert_eq!(
                public.verify_ecdsa(&digest, cr, cs).unwrap_err(),
                Rc::SIGNATURE
            );
        }
        // An empty digest is the message representative 0: signable and verifiable.
        let (r0, s0) = key.sign_ecdsa(&[], &mut test_rng(b"k")).unwrap();
        public.verify_ecdsa(&[], &r0, &s0).unwrap();
        public
            .verify_ecdsa(&vec![0u8; curve.size()], &r0, &s0)
            .unwrap();
    }
}

// ---- ECDH ------------------------------------------------------------------------------

#[test]
fn ecdh_both_sides_agree() {
    for curve in Curve::ALL {
        let a = generate(curve, &mut test_rng(b"alice")).unwrap();
        let b = generate(curve, &mut test_rng(b"bob")).unwrap();
        let z_ab = a.ecdh(&b.public()).unwrap();
        let z_ba = b.ecdh(&a.public()).unwrap();
        assert_eq!(z_ab, z_ba);
        assert_eq!(z_ab.len(), curve.size());

        let (z, ephemeral) = ecdh_ephemeral(&a.public(), &mut test_rng(b"ephemeral")).unwrap();
        assert_eq!(a.ecdh(&ephemeral).unwrap(), z);
        assert_eq!(ephemeral.curve(), curve);
        // The ephemeral key is made from the rng as generate() makes keys.
        let expected = generate(curve, &mut test_rng(b"ephemeral")).unwrap();
        assert_eq!(ephemeral, expected.public());
    }
}

#[test]
fn ecdh_with_scalar_one_is_the_peer_x() {
    // d = 1: d·Q = Q, so Z is Q's x coordinate (plain arithmetic, no library trust needed).
    for curve in Curve::ALL {
        let one = from_scalar(curve, &[1]).unwrap();
        let peer = generate(curve, &mut test_rng(b"peer")).unwrap().public();
        assert_eq!(one.ecdh(&peer).unwrap(), peer.x());
    }
}

#[test]
fn ecdh_across_curves_is_refused() {
    let a = generate(Curve::P256, &mut test_rng(b"a")).unwrap();
    let b = generate(Curve::P384, &mut test_rng(b"b")).unwrap();
    assert_eq!(a.ecdh(&b.public()).unwrap_err(), Rc::CURVE);
    assert_eq!(b.ecdh(&a.public()).unwrap_err(), Rc::CURVE);
}

#[test]
fn spki_der_holds_the_point() {
    for curve in Curve::ALL {
        let public = generate(curve, &mut test_rng(b"spki")).unwrap().public();
        let der = public.to_spki_der().unwrap();
        let mut point = vec![0x04];
        point.extend(public.x());
        point.extend(public.y());
        assert!(der.ends_with(&point));
        let id_ec_public_key = unhex("06 07 2a 86 48 ce 3d 02 01");
        assert!(der
            .windows(id_ec_public_key.len())
            .any(|w| w == id_ec_public_key));
    }
}

#[test]
fn multiply_gives_the_point_whose_x_is_the_ecdh_secret() {
    for curve in Curve::ALL {
        let mut n = 0u8;
        let mut src = |b: &mut [u8]| {
            for x in b {
                n = n.wrapping_add(7);
                *x = n;
            }
        };
        let a = generate(curve, &mut src).unwrap();
        let b = generate(curve, &mut src).unwrap();
        let point = a.multiply(&b.public()).unwrap();
        assert_eq!(point.x(), a.ecdh(&b.public()).unwrap());
        // d_a·Q_b = d_b·Q_a as whole points.
        assert_eq!(point, b.multiply(&a.public()).unwrap());
    }
}
