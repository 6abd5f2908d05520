//! Keys for encrypting the state at rest (AES-256-GCM, see [`crate::state`]).
//!
//! A [`KeyProvider`] hands out one 256-bit key per instance; [`FileKeyProvider`] is the
//! host key file (`--key file=PATH`), and a KMS can plug in behind the same trait.
//!
//! The key file holds the key as 32 raw bytes or as 64 hex digits (surrounding
//! whitespace allowed). It must be a regular file with mode 0600 or stricter: a key
//! readable or writable by group or others is refused.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why no key could be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "key file {path} has mode {mode:04o}: it must not be accessible to group or others \
         (chmod 600 {path})"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("key file {path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("--key {option}: {reason}")]
    Option { option: String, reason: String },
    #[error("no key for instance {instance}: {reason}")]
    Provider { instance: String, reason: String },
}

/// A source of per-instance state encryption keys.
pub trait KeyProvider: Send + Sync {
    /// The AES-256 key of `instance` (the state directory's path for the CLI's servers).
    fn key(&self, instance: &str) -> Result<[u8; 32], KeyError>;
}

/// How the key file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyFormat {
    /// 32 raw bytes or 64 hex digits, told apart by length.
    #[default]
    Auto,
    /// 64 hex digits.
    Hex,
    /// 32 raw bytes.
    Binary,
}

/// `--key file=PATH[,format=hex|binary][,mode=aes-256-gcm][,remove=true|false]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOption {
    pub file: PathBuf,
    pub format: KeyFormat,
    /// Delete the key file once it has been read (swtpm's `remove=true`).
    pub remove: bool,
}

/// Parse swtpm's `--key` value. Only `file=` keys and `mode=aes-256-gcm` are accepted.
pub fn parse_key_option(value: &str) -> Result<KeyOption, KeyError> {
    let bad = |reason: String| KeyError::Option {
        option: value.to_string(),
        reason,
    };
    let mut file = None;
    let mut format = KeyFormat::Auto;
    let mut remove = false;
    for part in value.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match k {
            "file" if !v.is_empty() => file = Some(PathBuf::from(v)),
            "format" => {
                format = match v {
                    "hex" => KeyFormat::Hex,
                    "binary" => KeyFormat::Binary,
                    _ => return Err(bad(format!("format={v}: use hex or binary"))),
                }
            }
            "mode" => match v {
                "aes-256-gcm" => {}
                "aes-128-cbc" | "aes-256-cbc" => {
                    return Err(bad(format!(
                        "mode={v} is not supported: CBC gives no integrity protection; \
                         the state is encrypted with aes-256-gcm only"
                    )))
                }
                _ => return Err(bad(format!("mode={v}: only aes-256-gcm is supported"))),
            },
            "remove" => {
                remove = match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(format!("remove={v}: use true or false"))),
                }
            }
            "pwdfile" | "fd" | "pwdfd" | "kdf" => {
                return Err(bad(format!(
                    "{k}= is not supported: give the 256-bit key itself with file=PATH"
                )))
            }
            _ => return Err(bad(format!("unknown option '{part}'"))),
        }
    }
    let file = file.ok_or_else(|| bad("file=PATH is required".into()))?;
    Ok(KeyOption {
        file,
        format,
        remove,
    })
}

/// The host key file: one key for every instance on the host.
pub struct FileKeyProvider {
    key: [u8; 32],
}

impl std::fmt::Debug for FileKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKeyProvider { .. }")
    }
}

impl FileKeyProvider {
    /// Read and check the key file (format detected from its length).
    pub fn open(path: impl AsRef<Path>) -> Result<FileKeyProvider, KeyError> {
        Self::open_with(path, KeyFormat::Auto)
    }

    /// Read and check the key file as `--key` says, deleting it if `remove` is set.
    pub fn from_option(opt: &KeyOption) -> Result<FileKeyProvider, KeyError> {
        let p = Self::open_with(&opt.file, opt.format)?;
        if opt.remove {
            fs::remove_file(&opt.file).map_err(|error| KeyError::Io {
                path: opt.file.clone(),
                error,
            })?;
        }
        Ok(p)
    }

    /// Read and check the key file.
    pub fn open_with(
        path: impl AsRef<Path>,
        format: KeyFormat,
    ) -> Result<FileKeyProvider, KeyError> {
        let path = path.as_ref();
        let io = |error| KeyError::Io {
            path: path.to_path_buf(),
            error,
        };
        // Symbolic links are followed (Kubernetes mounts secrets through them): the
        // checks below are on the file that was opened.
        let mut f = fs::File::open(path).map_err(io)?;
        let meta = f.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(KeyError::NotAFile(path.to_path_buf()));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut bytes = Vec::with_capacity(80);
        f.by_ref().take(4096).read_to_end(&mut bytes).map_err(io)?;
        let key = parse_key_bytes(&bytes, format).map_err(|reason| KeyError::Format {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(FileKeyProvider { key })
    }

    /// A provider holding `key` (tests, or keys obtained elsewhere).
    pub fn from_key(key: [u8; 32]) -> FileKeyProvider {
        FileKeyProvider { key }
    }
}

impl KeyProvider for FileKeyProvider {
    fn key(&self, _instance: &str) -> Result<[u8; 32], KeyError> {
        Ok(self.key)
    }
}

/// One key per instance derived from another provider's host key: HKDF-SHA256 (RFC 5869)
/// with no salt, the info being [`PerInstanceKeys::INFO`] followed by the instance name.
/// The vTPM host encrypts each instance's state under its own key, so a state file moved
/// into another instance's directory fails to decrypt instead of giving that VM another
/// VM's TPM.
pub struct PerInstanceKeys<P> {
    host: P,
}

impl<P: KeyProvider> PerInstanceKeys<P> {
    /// The label in front of the instance name in HKDF's info.
    pub const INFO: &'static [u8] = b"trustlaunch vtpm-host instance state key\0";

    pub fn new(host: P) -> Self {
        PerInstanceKeys { host }
    }
}

impl<P: KeyProvider> KeyProvider for PerInstanceKeys<P> {
    fn key(&self, instance: &str) -> Result<[u8; 32], KeyError> {
        let ikm = self.host.key(instance)?;
        hkdf_sha256(&ikm, &[Self::INFO, instance.as_bytes()]).ok_or_else(|| KeyError::Provider {
            instance: instance.to_string(),
            reason: "HKDF failed".into(),
        })
    }
}

/// HKDF-SHA256 (RFC 5869) with the default salt, 32 bytes of output: the first block of
/// expand over the concatenation of `info`.
fn hkdf_sha256(ikm: &[u8], info: &[&[u8]]) -> Option<[u8; 32]> {
    use hmac::{Hmac, Mac};
    type HmacSha256 = Hmac<sha2::Sha256>;
    let mut extract = HmacSha256::new_from_slice(&[0u8; 32]).ok()?;
    extract.update(ikm);
    let prk = extract.finalize().into_bytes();
    let mut expand = HmacSha256::new_from_slice(&prk).ok()?;
    for part in info {
        expand.update(part);
    }
    expand.update(&[1]);
    Some(expand.finalize().into_bytes().into())
}

fn parse_key_bytes(bytes: &[u8], format: KeyFormat) -> Result<[u8; 32], String> {
    let raw = || -> Result<[u8; 32], String> {
        bytes.try_into().map_err(|_| {
            format!(
                "{} bytes long; a binary key is exactly 32 bytes",
                bytes.len()
            )
        })
    };
    let hex = || -> Result<[u8; 32], String> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| "not 64 hex digits".to_string())?
            .trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "not a 256-bit key: expected 64 hex digits or 32 raw bytes, found {} bytes",
                bytes.len()
            ));
        }
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(key)
    };
    match format {
        KeyFormat::Binary => raw(),
        KeyFormat::Hex => hex(),
        KeyFormat::Auto if bytes.len() == 32 => raw(),
        KeyFormat::Auto => hex(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn hkdf_matches_rfc_5869_test_case_3() {
        // Test Case 3: IKM 22 x 0x0b, no salt, no info; the first 32 bytes of the OKM.
        let okm = hkdf_sha256(&[0x0b; 22], &[]).expect("hkdf");
        let expected = "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d";
        let got: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn instance_keys_differ_per_instance_and_host_key() {
        let a = PerInstanceKeys::new(FileKeyProvider::from_key([7; 32]));
        let b = PerInstanceKeys::new(FileKeyProvider::from_key([8; 32]));
        let k = |p: &dyn KeyProvider, n: &str| p.key(n).expect("key");
        assert_eq!(k(&a, "vm-a"), k(&a, "vm-a"));
        assert_ne!(k(&a, "vm-a"), k(&a, "vm-b"));
        assert_ne!(k(&a, "vm-a"), k(&b, "vm-a"));
        assert_ne!(k(&a, "vm-a"), [7; 32]);
        let mut info = PerInstanceKeys::<FileKeyProvider>::INFO.to_vec();
        info.extend_from_slice(b"vm-a");
        assert_eq!(Some(k(&a, "vm-a")), hkdf_sha256(&[7; 32], &[&info]));
    }

    fn write(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, bytes).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    #[test]
    fn raw_and_hex_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        let raw = write(dir.path(), "raw", &key, 0o600);
        assert_eq!(
            FileKeyProvider::open(&raw)
                .expect("raw")
                .key("x")
                .expect("key"),
            key
        );
        let text: String = key.iter().map(|b| format!("{b:02X}")).collect();
        let hex = write(dir.path(), "hex", format!("{text}\n").as_bytes(), 0o400);
        assert_eq!(
            FileKeyProvider::open(&hex)
                .expect("hex")
                .key("x")
                .expect("key"),
            key
        );
        assert!(FileKeyProvider::open_with(&hex, KeyFormat::Binary).is_err());
        assert!(FileKeyProvider::open_with(&raw, KeyFormat::Hex).is_err());
        let short = write(dir.path(), "short", b"abcd", 0o600);
        assert!(matches!(
            FileKeyProvider::open(&short),
            Err(KeyError::Format { .. })
        ));
    }

    #[test]
    fn permissive_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [0o640, 0o604, 0o644, 0o660, 0o602] {
            let p = write(dir.path(), "k", &[1u8; 32], mode);
            let err = FileKeyProvider::open(&p).expect_err("must refuse");
            assert!(matches!(err, KeyError::Permissions { .. }), "{err}");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        let p = write(dir.path(), "k", &[1u8; 32], 0o600);
        FileKeyProvider::open(&p).expect("0600 is fine");
    }

    #[test]
    fn key_option_parsing() {
        let o = parse_key_option("file=/k,format=hex,mode=aes-256-gcm,remove=true").expect("ok");
        assert_eq!(o.file, PathBuf::from("/k"));
        assert_eq!(o.format, KeyFormat::Hex);
        assert!(o.remove);
        let o = parse_key_option("file=/k").expect("ok");
        assert_eq!((o.format, o.remove), (KeyFormat::Auto, false));
        for bad in [
            "file=/k,mode=aes-256-cbc",
            "file=/k,mode=aes-128-cbc",
            "pwdfile=/p",
            "format=hex",
            "file=/k,format=base64",
            "file=/k,bogus",
        ] {
            assert!(parse_key_option(bad).is_err(), "{bad}");
        }
        let err = parse_key_option("file=/k,mode=aes-256-cbc").expect_err("cbc");
        assert!(err.to_string().contains("aes-256-gcm"), "{err}");
    }
}
