//! Health tokens: the verifier's verdict on a node as a signed JWT (RFC 7519, JWS compact
//! serialization, ES256 = ECDSA P-256 with SHA-256, RFC 7518 3.4), and the JWKS (RFC 7517)
//! that relying parties fetch to check it.
//!
//! No I/O and no clock: the caller passes the time and keeps the key file.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Why a token could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The signing key file is not a PKCS#8 P-256 private key.
    #[error("token signing key: {0}")]
    Key(String),
    /// The token is not three base64url parts with JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names an algorithm or key this verifier does not accept.
    #[error("token header: {0}")]
    Header(String),
    /// No key in the JWKS has the token's `kid`.
    #[error("no key {kid:?} in the JWKS")]
    UnknownKey { kid: String },
    /// The signature does not verify with the key.
    #[error("token signature invalid")]
    Signature,
    /// `exp` is not after `now`, or `nbf` is after it.
    #[error("token not valid at {now}: nbf {nbf}, exp {exp}")]
    Expired { now: u64, nbf: u64, exp: u64 },
}

/// The verifier's token signing key (ECDSA P-256), with its key id: the RFC 7638 JWK
/// thumbprint, so the id changes exactly when the key does.
#[derive(Clone)]
pub struct TokenSigner {
    key: SigningKey,
    kid: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The public JWK members of a P-256 key, in RFC 7638's lexicographic order.
fn public_jwk(key: &VerifyingKey) -> Value {
    let point = key.to_encoded_point(false);
    json!({
        "crv": "P-256",
        "kty": "EC",
        "x": b64(point.x().map(|x| x.as_slice()).unwrap_or_default()),
        "y": b64(point.y().map(|y| y.as_slice()).unwrap_or_default()),
    })
}

impl TokenSigner {
    /// A signer from 32 bytes of fresh randomness (the caller's CSPRNG).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Result<Self, TokenError> {
        let key = SigningKey::from_slice(secret).map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(Self::with_key(key))
    }

    /// A signer from a PKCS#8 PEM private key (as [`Self::to_pkcs8_pem`] writes).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, TokenError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(Self::with_key(key))
    }

    fn with_key(key: SigningKey) -> Self {
        let jwk = public_jwk(key.verifying_key());
        // serde_json's Map is ordered by key, so this is RFC 7638's canonical form.
        let kid = b64(&Sha256::digest(jwk.to_string().as_bytes()));
        TokenSigner { key, kid }
    }

    /// The private key as PKCS#8 PEM, to keep in the verifier's data directory.
    pub fn to_pkcs8_pem(&self) -> Result<String, TokenError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| TokenError::Key(e.to_string()))
    }

    /// The key id that tokens carry in their header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK with `kid`, `use` and `alg`.
    pub fn jwk(&self) -> Value {
        let mut jwk = public_jwk(self.key.verifying_key());
        if let Some(m) = jwk.as_object_mut() {
            m.insert("kid".into(), Value::String(self.kid.clone()));
            m.insert("use".into(), Value::String("sig".into()));
            m.insert("alg".into(), Value::String("ES256".into()));
        }
        jwk
    }

    /// The JWKS document (`{"keys": [...]}`) to publish.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    /// Sign `claims` (a JSON object) as a compact JWS.
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(Value::Object(claims.clone()).to_string().as_bytes())
        );
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&signature.to_bytes()))
    }
}

/// Check a token against a JWKS at time `now` (seconds since the epoch) and return its
/// claims. Only ES256 with a `kid` found in the JWKS is accepted (no `none`, no HMAC: the
/// header never chooses the verification method).
pub fn verify_token(token: &str, jwks: &Value, now: u64) -> Result<Map<String, Value>, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "a JWS has three dot-separated parts".into(),
        ));
    };
    let decode = |what: &str, part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| TokenError::Malformed(format!("{what}: {e}")))
    };
    let json_of = |what: &str, part: &str| -> Result<Map<String, Value>, TokenError> {
        match serde_json::from_slice(&decode(what, part)?) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(TokenError::Malformed(format!(
                "{what} is not a JSON object"
            ))),
            Err(e) => Err(TokenError::Malformed(format!("{what}: {e}"))),
        }
    };
    let header = json_of("header", h)?;
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err(TokenError::Header(format!(
            "alg {}, only ES256 is accepted",
            header.get("alg").unwrap_or(&Value::Null)
        )));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| TokenError::Header("no kid".into()))?;
    let jwk = jwks
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| {
            keys.iter()
                .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        })
        .ok_or_else(|| TokenError::UnknownKey {
            kid: kid.to_string(),
        })?;
    let coordinate = |name: &str| -> Result<Vec<u8>, TokenError> {
        let text = jwk.get(name).and_then(Value::as_str).unwrap_or_default();
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| TokenError::UnknownKey {
                kid: format!("{kid} (bad {name}: {e})"),
            })
    };
    if jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
        return Err(TokenError::UnknownKey {
            kid: format!("{kid} (not a P-256 key)"),
        });
    }
    let point = [vec![4u8], coordinate("x")?, coordinate("y")?].concat();
    let key = VerifyingKey::from_sec1_bytes(&point).map_err(|e| TokenError::UnknownKey {
        kid: format!("{kid} ({e})"),
    })?;
    let signature =
        Signature::from_slice(&decode("signature", s)?).map_err(|_| TokenError::Signature)?;
    key.verify(format!("{h}.{c}").as_bytes(), &signature)
        .map_err(|_| TokenError::Signature)?;
    let claims = json_of("claims", c)?;
    let time = |name: &str| claims.get(name).and_then(Value::as_u64);
    let (nbf, exp) = (time("nbf").unwrap_or(0), time("exp").unwrap_or(u64::MAX));
    if now < nbf || now >= exp {
        return Err(TokenError::Expired { now, nbf, exp });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::from_secret_bytes(&[7u8; 32]).unwrap()
    }

    fn claims(exp: u64) -> Map<String, Value> {
        let Value::Object(m) = json!({"sub": "node-1", "iat": 100, "nbf": 100, "exp": exp}) else {
            unreachable!()
        };
        m
    }

    #[test]
    fn sign_verify_round_trip_and_key_file() {
        let s = signer();
        let token = s.sign(&claims(200));
        assert_eq!(verify_token(&token, &s.jwks(), 150).unwrap(), claims(200));
        let again = TokenSigner::from_pkcs8_pem(&s.to_pkcs8_pem().unwrap()).unwrap();
        assert_eq!(again.kid(), s.kid());
        assert_eq!(
            verify_token(&again.sign(&claims(200)), &s.jwks(), 150).unwrap(),
            claims(200)
        );
    }

    #[test]
    fn refusals() {
        let s = signer();
        let token = s.sign(&claims(200));
        assert!(matches!(
            verify_token(&token, &s.jwks(), 200),
            Err(TokenError::Expired { .. })
        ));
        assert!(matches!(
            verify_token(&token, &s.jwks(), 99),
            Err(TokenError::Expired { .. })
        ));
        let other = TokenSigner::from_secret_bytes(&[9u8; 32]).unwrap();
        assert!(matches!(
            verify_token(&token, &other.jwks(), 150),
            Err(TokenError::UnknownKey { .. })
        ));
        // Claims changed after signing.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = b64(Value::Object(claims(10_000)).to_string().as_bytes());
        let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
        assert_eq!(
            verify_token(&forged, &s.jwks(), 150),
            Err(TokenError::Signature)
        );
        // alg none is never accepted.
        let none = format!(
            "{}.{}.",
            b64(json!({"alg": "none", "kid": s.kid()})
                .to_string()
                .as_bytes()),
            parts[1]
        );
        assert!(matches!(
            verify_token(&none, &s.jwks(), 150),
            Err(TokenError::Header(_))
        ));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(matches!(
                verify_token(bad, &s.jwks(), 150),
                Err(TokenError::Malformed(_))
            ));
        }
    }
}
