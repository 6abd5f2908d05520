//! Health tokens against an independent JWT implementation: PyJWT (Debian's python3-jwt over
//! python3-cryptography) verifies our ES256 tokens with our JWKS, our verifier accepts
//! PyJWT's tokens signed with our key, and the key id is the RFC 7638 thumbprint computed
//! by Python's own JSON and hashlib.

use attest::token::{verify_token, TokenSigner};
use serde_json::{json, Value};
use std::process::Command;

const PYTHON: &str = "/usr/bin/python3";

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e} (the test command installs it)"));
    assert!(
        out.status.success(),
        "python failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn signer() -> TokenSigner {
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).expect("randomness");
    TokenSigner::from_secret_bytes(&secret).expect("key")
}

#[test]
fn pyjwt_verifies_our_tokens_with_our_jwks() {
    let s = signer();
    let claims = json!({"sub": "aks-nodepool1-0", "x-ms-attestation-type": "tpm", "secureboot": true,
        "iat": 1_700_000_000u64, "nbf": 1_700_000_000u64, "exp": 4_000_000_000u64});
    let token = s.sign(claims.as_object().expect("object"));
    let script = r#"
import json, sys, jwt
jwks = jwt.PyJWKSet.from_json(sys.argv[1])
token = sys.argv[2]
kid = jwt.get_unverified_header(token)["kid"]
key = next(k for k in jwks.keys if k.key_id == kid)
print(json.dumps(jwt.decode(token, key.key, algorithms=["ES256"]), sort_keys=True))
"#;
    let decoded: Value =
        serde_json::from_str(&python(script, &[&s.jwks().to_string(), &token])).expect("JSON");
    assert_eq!(decoded, claims);

    // A token whose claims changed after signing is refused by PyJWT too.
    let parts: Vec<&str> = token.split('.').collect();
    let forged_script = r#"
import sys, jwt
jwks = jwt.PyJWKSet.from_json(sys.argv[1])
try:
    jwt.decode(sys.argv[2], jwks.keys[0].key, algorithms=["ES256"])
    print("accepted")
except jwt.InvalidSignatureError:
    print("invalid signature")
"#;
    let other = signer().sign(claims.as_object().expect("object"));
    let other_parts: Vec<&str> = other.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], parts[1], other_parts[2]);
    assert_eq!(
        python(forged_script, &[&s.jwks().to_string(), &forged]).trim(),
        "invalid signature"
    );
    assert!(verify_token(&forged, &s.jwks(), 1_800_000_000).is_err());
}

#[test]
fn we_verify_pyjwt_tokens_signed_with_our_key() {
    let s = signer();
    let script = r#"
import sys, jwt
print(jwt.encode({"sub": "node", "exp": 4000000000, "n": 7}, sys.argv[1], algorithm="ES256",
                 headers={"kid": sys.argv[2]}))
"#;
    let token = python(script, &[&s.to_pkcs8_pem().expect("pem"), s.kid()]);
    let claims = verify_token(token.trim(), &s.jwks(), 1_800_000_000).expect("PyJWT token");
    assert_eq!(
        Value::Object(claims),
        json!({"sub": "node", "exp": 4_000_000_000u64, "n": 7})
    );
}

#[test]
fn kid_is_the_rfc7638_thumbprint() {
    let s = signer();
    let jwk = s.jwk();
    let script = r#"
import base64, hashlib, json, sys
jwk = json.loads(sys.argv[1])
canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
print(base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode())
"#;
    assert_eq!(python(script, &[&jwk.to_string()]).trim(), s.kid());
}
