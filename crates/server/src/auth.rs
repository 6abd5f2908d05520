//! The operators' admin bearer token: 32 random bytes in hex, generated into the data
//! directory (mode 0600) on first start and compared in constant time.

use crate::ServerError;
use std::io::Write;
use std::path::Path;

pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Reads `DIR/admin-token`, creating the directory and a fresh token when missing.
pub fn load_or_create_admin_token(data_dir: &Path) -> Result<String, ServerError> {
    let io = |source| ServerError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let token = hex::encode(bytes);
    let tmp = data_dir.join(format!("{ADMIN_TOKEN_FILE}.tmp"));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(format!("{token}\n").as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(token)
}

/// The read-only key of one cluster's Kubernetes node API: HMAC-SHA256 of `rg/cluster` under
/// the admin token, in hex. kubectl sends no bearer token over plain HTTP, so the kubeconfig
/// that `get-credentials` writes carries this key in the server URL's path instead (a
/// capability as secret as the kubeconfig itself, valid for that cluster's reads only).
pub fn cluster_read_key(admin_token: &str, rg: &str, cluster: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(admin_token.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(format!("kubernetes-read/{rg}/{cluster}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time equality of two strings.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True when `header` is `Bearer <token>` for exactly this token.
pub fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    same(given.trim(), token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_once_private_and_checked() {
        let dir = std::env::temp_dir().join(format!("tl-token-{}", std::process::id()));
        let t1 = load_or_create_admin_token(&dir).unwrap();
        let t2 = load_or_create_admin_token(&dir).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(ADMIN_TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(bearer_matches(Some(&format!("Bearer {t1}")), &t1));
        assert!(!bearer_matches(Some("Bearer nope"), &t1));
        assert!(!bearer_matches(None, &t1));
        let k = cluster_read_key(&t1, "rg", "c1");
        assert_eq!(k.len(), 64);
        assert_ne!(k, cluster_read_key(&t1, "rg", "c2"));
        // Another admin token (always different: its last hex digit changed) gives another key.
        let other = format!("{}{}", &t2[..63], if t2.ends_with('0') { '1' } else { '0' });
        assert_ne!(k, cluster_read_key(&other, "rg", "c1"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
