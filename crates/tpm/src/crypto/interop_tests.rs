//! Interoperability with an independent implementation: the `openssl` command-line tool
//! verifies what this module signs and decrypts what it encrypts, and the other way round,
//! with keys exported as DER SubjectPublicKeyInfo (PEM-wrapped here) or PKCS#8, and keys
//! imported from OpenSSL's own key generation through `from_prime` / `from_scalar`.

use std::path::PathBuf;
use std::process::Command;

use super::ecc::{self, Curve, EccPublic};
use super::rsa::{self, RsaPrivate, RsaPublic};
use super::KdfStream;
use crate::hash::HashAlg;

/// A scratch directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("tpm-crypto-interop-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, data).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `openssl args...`, asserting success; returns stdout.
fn openssl(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("the openssl command-line tool must be installed for the interop tests");
    assert!(
        out.status.success(),
        "openssl {:?} failed: {}{}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn pem(label: &str, der: &[u8]) -> String {
    use p256::pkcs8::der::pem::{encode_string, LineEnding};
    encode_string(label, LineEnding::LF, der).unwrap()
}

fn rng(tag: &[u8]) -> KdfStream {
    KdfStream::new(HashAlg::Sha256, b"interop rng", tag, b"", b"")
}

/// The named big number of `openssl pkey -text -noout` output ("modulus:" followed by
/// indented lines of colon-separated hex), as big-endian bytes.
fn text_field(text: &str, name: &str) -> Vec<u8> {
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| l.trim_end() == format!("{name}:"))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    let hex: String = lines
        .take_while(|l| l.starts_with(' '))
        .flat_map(|l| l.trim().split(':'))
        .collect();
    hex::decode(hex).unwrap()
}

/// DER ECDSA-Sig-Value { r INTEGER, s INTEGER } (short lengths only: P-256/P-384 fit).
fn ecdsa_sig_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn integer(v: &[u8]) -> Vec<u8> {
        let first = v.iter().position(|b| *b != 0).unwrap_or(v.len() - 1);
        let mut body = v[first..].to_vec();
        if body[0] & 0x80 != 0 {
            body.insert(0, 0);
        }
        let mut out = vec![0x02, body.len() as u8];
        out.extend(body);
        out
    }
    let mut body = integer(r);
    body.extend(integer(s));
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// Parses a DER ECDSA-Sig-Value into (r, s) (short lengths only).
fn ecdsa_sig_from_der(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(der[0], 0x30);
    assert_eq!(der[1] as usize, der.len() - 2);
    let r_len = der[3] as usize;
    let r = der[4..4 + r_len].to_vec();
    let s_at = 4 + r_len;
    assert_eq!(der[s_at], 0x02);
    let s_len = der[s_at + 1] as usize;
    let s = der[s_at + 2..s_at + 2 + s_len].to_vec();
    (r, s)
}

fn verify_ok(out: &[u8]) {
    assert!(
        String::from_utf8_lossy(out).contains("Verified OK")
            || String::from_utf8_lossy(out).contains("Signature Verified Successfully"),
        "{}",
        String::from_utf8_lossy(out)
    );
}

fn rsa_key() -> RsaPrivate {
    rsa::generate(2048, 0, &mut rng(b"rsa key")).unwrap()
}

fn write_rsa_public(dir: &Scratch, key: &RsaPublic) -> PathBuf {
    dir.write("pub.pem", pem("PUBLIC KEY", &key.to_spki_der().unwrap()))
}

fn write_ecc_public(dir: &Scratch, key: &EccPublic) -> PathBuf {
    dir.write("pub.pem", pem("PUBLIC KEY", &key.to_spki_der().unwrap()))
}

#[test]
fn openssl_verifies_rsa_signatures() {
    let dir = Scratch::new("rsa-sign");
    let key = rsa_key();
    let public = write_rsa_public(&dir, &key.public());
    let msg = dir.write("msg", b"a message for OpenSSL to check");
    let mut rng = rng(b"pss salts");
    for hash in HashAlg::ALL {
        let name = hash.name();
        let digest = hash.digest(&[b"a message for OpenSSL to check"]);
        let digest_file = dir.write("digest", &digest);

        let sig = dir.write("v15.sig", key.sign_pkcs1v15(hash, &digest).unwrap());
        verify_ok(&openssl(&[
            &"dgst",
            &format!("-{name}"),
            &"-verify",
            &public,
            &"-signature",
            &sig,
            &msg,
        ]));

        let sig = dir.write("pss.sig", key.sign_pss(hash, &digest, &mut rng).unwrap());
        for saltlen in ["digest", "auto"] {
            verify_ok(&openssl(&[
                &"dgst",
                &format!("-{name}"),
                &"-sigopt",
                &"rsa_padding_mode:pss",
                &"-sigopt",
                &format!("rsa_pss_saltlen:{saltlen}"),
                &"-verify",
                &public,
                &"-signature",
                &sig,
                &msg,
            ]));
        }
        verify_ok(&openssl(&[
            &"pkeyutl",
            &"-verify",
            &"-pubin",
            &"-inkey",
            &public,
            &"-in",
            &digest_file,
            &"-sigfile",
            &sig,
            &"-pkeyopt",
            &format!("digest:{name}"),
            &"-pkeyopt",
            &"rsa_padding_mode:pss",
            &"-pkeyopt",
            &"rsa_pss_saltlen:digest",
        ]));
    }
}

#[test]
fn openssl_verifies_ecdsa_signatures() {
    for (curve, hash) in [
        (Curve::P256, HashAlg::Sha256),
        (Curve::P384, HashAlg::Sha384),
    ] {
        let dir = Scratch::new(&format!("ecdsa-{}", curve.id()));
        let key = ecc::generate(curve, &mut rng(b"ecc key")).unwrap();
        let public = write_ecc_public(&dir, &key.public());
        let msg = dir.write("msg", b"an ECDSA message");
        let digest = hash.digest(&[b"an ECDSA message"]);
        let (r, s) = key.sign_ecdsa(&digest, &mut rng(b"nonce")).unwrap();
        let sig = dir.write("sig.der", ecdsa_sig_der(&r, &s));
        verify_ok(&openssl(&[
            &"dgst",
            &format!("-{}", hash.name()),
            &"-verify",
            &public,
            &"-signature",
            &sig,
            &msg,
        ]));
        // A SHA-512 digest is truncated to the order's length, as OpenSSL does too.
        let digest = HashAlg::Sha512.digest(&[b"an ECDSA message"]);
        let (r, s) = key.sign_ecdsa(&digest, &mut rng(b"nonce")).unwrap();
        let sig = dir.write("sig512.der", ecdsa_sig_der(&r, &s));
        verify_ok(&openssl(&[
            &"dgst",
            &"-sha512",
            &"-verify",
            &public,
            &"-signature",
            &sig,
            &msg,
        ]));
    }
}

#[test]
fn rsa_decrypts_what_openssl_encrypts_and_back() {
    let dir = Scratch::new("rsa-encrypt");
    let key = rsa_key();
    let public = write_rsa_public(&dir, &key.public());
    let private = dir.write("key.pem", key.to_pkcs8_pem());
    let secret = b"a 32-byte seed for a credential!";
    let plain = dir.write("plain", secret);
    let label = b"IDENTITY\0";
    for hash in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384] {
        let name = hash.name();
        let ct = dir.path("ct");
        openssl(&[
            &"pkeyutl",
            &"-encrypt",
            &"-pubin",
            &"-inkey",
            &public,
            &"-in",
            &plain,
            &"-out",
            &ct,
            &"-pkeyopt",
            &"rsa_padding_mode:oaep",
            &"-pkeyopt",
            &format!("rsa_oaep_md:{name}"),
            &"-pkeyopt",
            &format!("rsa_mgf1_md:{name}"),
            &"-pkeyopt",
            &format!("rsa_oaep_label:{}", hex::encode(label)),
        ]);
        let ct = std::fs::read(&ct).unwrap();
        assert_eq!(key.decrypt_oaep(hash, label, &ct).unwrap(), secret);

        // And OpenSSL decrypts ours.
        let ours = dir.write(
            "ours",
            key.public()
                .encrypt_oaep(hash, label, secret, &mut rng(b"oaep"))
                .unwrap(),
        );
        let out = openssl(&[
            &"pkeyutl",
            &"-decrypt",
            &"-inkey",
            &private,
            &"-in",
            &ours,
            &"-pkeyopt",
            &"rsa_padding_mode:oaep",
            &"-pkeyopt",
            &format!("rsa_oaep_md:{name}"),
            &"-pkeyopt",
            &format!("rsa_mgf1_md:{name}"),
            &"-pkeyopt",
            &format!("rsa_oaep_label:{}", hex::encode(label)),
        ]);
        assert_eq!(out, secret);
    }
    // PKCS#1 v1.5 encryption by OpenSSL.
    let ct = dir.path("ct1");
    openssl(&[
        &"pkeyutl",
        &"-encrypt",
        &"-pubin",
        &"-inkey",
        &public,
        &"-in",
        &plain,
        &"-out",
        &ct,
        &"-pkeyopt",
        &"rsa_padding_mode:pkcs1",
    ]);
    let ct = std::fs::read(&ct).unwrap();
    assert_eq!(key.decrypt_pkcs1(&ct).unwrap(), secret);
}

/// An OpenSSL-generated RSA key imported through `from_prime` (n, e, p from `openssl pkey
/// -text`): signatures OpenSSL makes verify here, and PKCS#1 v1.5 signatures (deterministic)
/// come out byte-for-byte the same on both sides.
#[test]
fn openssl_rsa_key_imported_with_from_prime() {
    let dir = Scratch::new("rsa-import");
    let key_pem = dir.path("key.pem");
    openssl(&[
        &"genpkey",
        &"-algorithm",
        &"RSA",
        &"-pkeyopt",
        &"rsa_keygen_bits:2048",
        &"-out",
        &key_pem,
    ]);
    let text =
        String::from_utf8(openssl(&[&"pkey", &"-in", &key_pem, &"-text", &"-noout"])).unwrap();
    let n = text_field(&text, "modulus");
    let p = text_field(&text, "prime1");
    assert!(text.contains("publicExponent: 65537"));
    let key = RsaPrivate::from_prime(&n, 65537, &p).unwrap();
    assert_eq!(key.modulus(), rsa::RsaPublic::new(&n, 0).unwrap().modulus());

    let msg = dir.write("msg", b"signed by OpenSSL");
    let digest = HashAlg::Sha256.digest(&[b"signed by OpenSSL"]);
    let sig_path = dir.path("sig");
    openssl(&[
        &"dgst", &"-sha256", &"-sign", &key_pem, &"-out", &sig_path, &msg,
    ]);
    let sig = std::fs::read(&sig_path).unwrap();
    key.public()
        .verify_pkcs1v15(HashAlg::Sha256, &digest, &sig)
        .unwrap();
    assert_eq!(key.sign_pkcs1v15(HashAlg::Sha256, &digest).unwrap(), sig);

    // PSS with OpenSSL's largest salt (emLen - hLen - 2), which TPMs also accept.
    openssl(&[
        &"dgst",
        &"-sha256",
        &"-sign",
        &key_pem,
        &"-sigopt",
        &"rsa_padding_mode:pss",
        &"-sigopt",
        &"rsa_pss_saltlen:max",
        &"-out",
        &sig_path,
        &msg,
    ]);
    let sig = std::fs::read(&sig_path).unwrap();
    key.public()
        .verify_pss(HashAlg::Sha256, &digest, &sig)
        .unwrap();
}

/// OpenSSL-generated ECC keys imported through `from_scalar`: the public point computed
/// here is OpenSSL's, and OpenSSL's signatures verify here.
#[test]
fn openssl_ecc_key_imported_with_from_scalar() {
    for (curve, name, hash) in [
        (Curve::P256, "P-256", HashAlg::Sha256),
        (Curve::P384, "P-384", HashAlg::Sha384),
    ] {
        let dir = Scratch::new(&format!("ecc-import-{name}"));
        let key_pem = dir.path("key.pem");
        openssl(&[
            &"genpkey",
            &"-algorithm",
            &"EC",
            &"-pkeyopt",
            &format!("ec_paramgen_curve:{name}"),
            &"-out",
            &key_pem,
        ]);
        let text =
            String::from_utf8(openssl(&[&"pkey", &"-in", &key_pem, &"-text", &"-noout"])).unwrap();
        let d = text_field(&text, "priv");
        let point = text_field(&text, "pub");
        let key = ecc::from_scalar(curve, &d).unwrap();
        let size = curve.size();
        assert_eq!(point[0], 0x04);
        assert_eq!(key.public().x(), &point[1..1 + size]);
        assert_eq!(key.public().y(), &point[1 + size..]);
        let public = EccPublic::new(curve, &point[1..1 + size], &point[1 + size..]).unwrap();
        assert_eq!(public, key.public());

        let msg = dir.write("msg", b"signed by OpenSSL");
        let sig_path = dir.path("sig");
        openssl(&[
            &"dgst",
            &format!("-{}", hash.name()),
            &"-sign",
            &key_pem,
            &"-out",
            &sig_path,
            &msg,
        ]);
        let (r, s) = ecdsa_sig_from_der(&std::fs::read(&sig_path).unwrap());
        let digest = hash.digest(&[b"signed by OpenSSL"]);
        public.verify_ecdsa(&digest, &r, &s).unwrap();
    }
}

/// ECDH against `openssl pkeyutl -derive`: the same Z on both sides, with our key exported
/// as PKCS#8 and OpenSSL's peer key imported from its text form.
#[test]
fn ecdh_matches_openssl_derive() {
    for (curve, name) in [(Curve::P256, "P-256"), (Curve::P384, "P-384")] {
        let dir = Scratch::new(&format!("ecdh-{name}"));
        let ours = ecc::generate(curve, &mut rng(b"ecdh")).unwrap();
        let our_pem = dir.write("ours.pem", ours.to_pkcs8_pem());
        let peer_pem = dir.path("peer.pem");
        openssl(&[
            &"genpkey",
            &"-algorithm",
            &"EC",
            &"-pkeyopt",
            &format!("ec_paramgen_curve:{name}"),
            &"-out",
            &peer_pem,
        ]);
        let peer_pub_pem = dir.path("peer.pub.pem");
        openssl(&[
            &"pkey",
            &"-in",
            &peer_pem,
            &"-pubout",
            &"-out",
            &peer_pub_pem,
        ]);
        let z_openssl = openssl(&[
            &"pkeyutl",
            &"-derive",
            &"-inkey",
            &our_pem,
            &"-peerkey",
            &peer_pub_pem,
        ]);
        let text =
            String::from_utf8(openssl(&[&"pkey", &"-in", &peer_pem, &"-text", &"-noout"])).unwrap();
        let point = text_field(&text, "pub");
        let size = curve.size();
        let peer = EccPublic::new(curve, &point[1..1 + size], &point[1 + size..]).unwrap();
        assert_eq!(ours.ecdh(&peer).unwrap(), z_openssl);
        let peer_key = ecc::from_scalar(curve, &text_field(&text, "priv")).unwrap();
        assert_eq!(peer_key.ecdh(&ours.public()).unwrap(), z_openssl);
    }
}

/// The SubjectPublicKeyInfo DER parses in OpenSSL as the same key.
#[test]
fn openssl_reads_the_spki_der() {
    let dir = Scratch::new("spki");
    let key = rsa_key();
    let der = dir.write("pub.der", key.public().to_spki_der().unwrap());
    let text = String::from_utf8(openssl(&[
        &"pkey", &"-pubin", &"-inform", &"DER", &"-in", &der, &"-text", &"-noout",
    ]))
    .unwrap();
    let mut modulus = text_field(&text, "Modulus");
    if modulus.len() == 257 && modulus[0] == 0 {
        modulus.remove(0);
    }
    assert_eq!(modulus, key.modulus());
    assert!(text.contains("Exponent: 65537"));
}
