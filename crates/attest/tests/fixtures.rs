//! verify_quote on real quotes from swtpm (libtpms) and from our vTPM, made with tpm2-tools
//! and accepted by tpm2_checkquote when they were made (testdata/README.md says how). The live
//! version of these checks, which runs the TPMs and tpm2_checkquote every time, is
//! crates/trustlaunch/tests/attest_quote.rs.

#![allow(clippy::unwrap_used)]

use attest::{verify_quote, AkPublic, Error, HashAlg, PcrValues};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

const DIRS: [&str; 4] = ["swtpm-ecc", "swtpm-rsa", "ours-ecc", "ours-rsa"];

struct Fixture {
    name: &'static str,
    ak_pub: Vec<u8>,
    ak_pem: String,
    ak_name: Vec<u8>,
    msg: Vec<u8>,
    sig: Vec<u8>,
    pcrs_file: Vec<u8>,
    pcrs_text: String,
    nonce: Vec<u8>,
}

fn load(name: &'static str) -> Fixture {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{name}/{f}: {e}"));
    let text = |f: &str| String::from_utf8(read(f)).unwrap();
    Fixture {
        name,
        ak_pub: read("ak.pub"),
        ak_pem: text("ak.pem"),
        ak_name: read("ak.name"),
        msg: read("quote.msg"),
        sig: read("quote.sig"),
        pcrs_file: read("quote.pcrs"),
        pcrs_text: text("pcrs.txt"),
        nonce: hex::decode(text("nonce.hex").trim()).unwrap(),
    }
}

fn all() -> Vec<Fixture> {
    DIRS.into_iter().map(load).collect()
}

/// sha256 PCR after extending `digests` into zeros.
fn extended(digests: &[[u8; 32]]) -> Vec<u8> {
    digests.iter().fold(vec![0u8; 32], |pcr, d| {
        Sha256::new()
            .chain_update(&pcr)
            .chain_update(d)
            .finalize()
            .to_vec()
    })
}

fn be32(n: u16) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[30..].copy_from_slice(&n.to_be_bytes());
    d
}

#[test]
fn every_fixture_verifies_with_both_key_forms_and_both_pcr_formats() {
    for f in all() {
        let from_tpm = AkPublic::from_tpm2b_public(&f.ak_pub).unwrap();
        let from_pem = AkPublic::from_pem(&f.ak_pem).unwrap();
        assert!(from_tpm.same_key(&from_pem), "{}", f.name);
        assert_eq!(from_tpm.name(), Some(f.ak_name.clone()), "{}", f.name);
        assert_eq!(from_tpm.is_restricted_signing(), Some(true), "{}", f.name);
        let file = PcrValues::from_tpm2_tools(&f.pcrs_file).unwrap();
        let text = PcrValues::from_text(&f.pcrs_text).unwrap();
        assert_eq!(
            file, text,
            "{}: the pcrs file and tpm2_pcrread disagree",
            f.name
        );
        // Independent truth: the values the fixture script extended.
        assert_eq!(
            text.get(HashAlg::Sha256, 0),
            Some(&extended(&[be32(7)])[..])
        );
        assert_eq!(
            text.get(HashAlg::Sha256, 7),
            Some(&extended(&[be32(0x1007)])[..])
        );
        for ak in [&from_tpm, &from_pem] {
            let v = verify_quote(ak, &f.msg, &f.sig, &f.nonce, &file)
                .unwrap_or_else(|e| panic!("{}: {e}", f.name));
            assert_eq!(v.extra_data, f.nonce);
            assert_eq!(v.signature_hash, HashAlg::Sha256);
            assert_eq!(
                v.selection,
                vec![(HashAlg::Sha256, vec![0, 1, 7]), (HashAlg::Sha1, vec![0])],
                "{}",
                f.name
            );
            let mut cat = Vec::new();
            for (bank, index) in [
                (HashAlg::Sha256, 0),
                (HashAlg::Sha256, 1),
                (HashAlg::Sha256, 7),
                (HashAlg::Sha1, 0),
            ] {
                cat.extend_from_slice(text.get(bank, index).unwrap());
            }
            assert_eq!(v.pcr_digest, Sha256::digest(&cat).to_vec(), "{}", f.name);
            // The qualified name is nameAlg || H(parent QN || AK name): SHA-256 sized.
            assert_eq!(v.signer_name.len(), 34, "{}", f.name);
            assert_eq!(v.signer_name[..2], [0x00, 0x0B]);
            assert!(v.safe, "{}", f.name);
            assert_eq!(v.restart_count, 0, "{}", f.name);
        }
    }
}

#[test]
fn every_fixture_refuses_each_kind_of_tampering_with_the_right_error() {
    for f in all() {
        let ak = AkPublic::from_tpm2b_public(&f.ak_pub).unwrap();
        let pcrs = PcrValues::from_tpm2_tools(&f.pcrs_file).unwrap();

        // One byte of the attest: the clock (after magic, type, name and extraData).
        let clock_at = 6 + 2 + 34 + 2 + f.nonce.len();
        let mut msg = f.msg.clone();
        msg[clock_at + 7] ^= 0x01;
        assert!(
            matches!(
                verify_quote(&ak, &msg, &f.sig, &f.nonce, &pcrs),
                Err(Error::SignatureInvalid { .. })
            ),
            "{}",
            f.name
        );
        // One byte of the signature, in its last octets (s, or the RSA signature).
        let mut sig = f.sig.clone();
        let last = sig.len() - 1;
        sig[last] ^= 0x01;
        assert!(
            matches!(
                verify_quote(&ak, &f.msg, &sig, &f.nonce, &pcrs),
                Err(Error::SignatureInvalid { .. })
            ),
            "{}",
            f.name
        );
        // Another nonce.
        let mut nonce = f.nonce.clone();
        nonce[0] ^= 0x01;
        assert_eq!(
            verify_quote(&ak, &f.msg, &f.sig, &nonce, &pcrs).unwrap_err(),
            Error::NonceMismatch {
                expected: nonce.clone(),
                observed: f.nonce.clone()
            },
            "{}",
            f.name
        );
        // Another PCR value.
        let mut changed = pcrs.clone();
        changed.insert(HashAlg::Sha1, 0, vec![0x55; 20]).unwrap();
        assert!(
            matches!(
                verify_quote(&ak, &f.msg, &f.sig, &f.nonce, &changed),
                Err(Error::PcrDigestMismatch { observed, .. }) if observed.len() == 32
            ),
            "{}",
            f.name
        );
        // A PCR missing.
        let partial: PcrValues = PcrValues::from_text(
            &f.pcrs_text
                .lines()
                .filter(|l| !l.starts_with("sha256 7 "))
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        )
        .unwrap();
        assert_eq!(
            verify_quote(&ak, &f.msg, &f.sig, &f.nonce, &partial).unwrap_err(),
            Error::MissingPcr {
                bank: HashAlg::Sha256,
                index: 7
            },
            "{}",
            f.name
        );
    }
}

#[test]
fn another_tpms_attestation_key_is_refused() {
    let fixtures = all();
    for f in &fixtures {
        let pcrs = PcrValues::from_tpm2_tools(&f.pcrs_file).unwrap();
        for other in fixtures.iter().filter(|o| o.name != f.name) {
            let ak = AkPublic::from_pem(&other.ak_pem).unwrap();
            let e = verify_quote(&ak, &f.msg, &f.sig, &f.nonce, &pcrs).unwrap_err();
            let same_kind = f.name.ends_with("ecc") == other.name.ends_with("ecc");
            if same_kind {
                assert!(
                    matches!(e, Error::SignatureInvalid { .. }),
                    "{} with {}'s AK: {e:?}",
                    f.name,
                    other.name
                );
            } else {
                assert!(
                    matches!(e, Error::SignatureKeyMismatch { .. }),
                    "{} with {}'s AK: {e:?}",
                    f.name,
                    other.name
                );
            }
        }
    }
}

#[test]
fn every_truncation_of_real_inputs_is_an_error() {
    for f in all() {
        let ak = AkPublic::from_tpm2b_public(&f.ak_pub).unwrap();
        let pcrs = PcrValues::from_tpm2_tools(&f.pcrs_file).unwrap();
        for n in 0..f.msg.len() {
            assert!(verify_quote(&ak, &f.msg[..n], &f.sig, &f.nonce, &pcrs).is_err());
        }
        for n in 0..f.sig.len() {
            assert!(verify_quote(&ak, &f.msg, &f.sig[..n], &f.nonce, &pcrs).is_err());
        }
        for n in 0..f.ak_pub.len() {
            assert!(AkPublic::from_tpm2b_public(&f.ak_pub[..n]).is_err());
        }
        for n in 0..f.pcrs_file.len() {
            assert!(PcrValues::from_tpm2_tools(&f.pcrs_file[..n]).is_err());
        }
    }
}
