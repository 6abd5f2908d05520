//! The state directory: one TPM's permanent state in one file, written crash-safely,
//! guarded by an exclusive lock so that two processes never serve the same TPM.
//!
//! # File format (version 1)
//!
//! All integers are big-endian.
//!
//! | offset | size | field                                                          |
//! |-------:|-----:|----------------------------------------------------------------|
//! | 0      | 8    | magic `TLVTPMST`                                               |
//! | 8      | 4    | format version, `1`                                            |
//! | 12     | 4    | flags; bit 0 = payload encrypted (reserved), others must be 0 |
//! | 16     | 8    | payload length `N`                                             |
//! | 24     | 32   | SHA-256 over bytes `0..24` followed by the payload             |
//! | 56     | N    | payload: [`tpm::Tpm::permanent_state`]                         |
//!
//! The file is exactly `56 + N` bytes long; anything else is corruption.
//!
//! The same envelope, with magic `TLVTPMVO`, carries the engine's volatile state in
//! state blobs ([`encode_volatile`], [`decode_volatile`]; see [`crate::stateblob`]).
//!
//! Encryption at rest will plug in between [`encode`]/[`decode`] and the engine blob
//! (the payload becomes ciphertext and flag bit 0 is set); until a key provider exists,
//! a file with that flag is refused rather than misread.

use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Magic bytes at the start of a state file.
pub const MAGIC: [u8; 8] = *b"TLVTPMST";
/// Magic bytes of a volatile-state blob (same envelope, different contents).
pub const VOLATILE_MAGIC: [u8; 8] = *b"TLVTPMVO";
/// The state file format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the fixed header in front of the payload.
pub const HEADER_LEN: usize = 56;
/// Flag bit: the payload is encrypted (reserved for the key-provider work).
pub const FLAG_ENCRYPTED: u32 = 1;

/// Name of the state file inside the state directory.
pub const STATE_FILE: &str = "tpm2-state.bin";
const TEMP_FILE: &str = ".tpm2-state.bin.tmp";
const LOCK_FILE: &str = ".vtpm.lock";

/// Largest payload accepted when reading, a guard against absurd length fields.
const MAX_PAYLOAD: u64 = 64 * 1024 * 1024;

/// Why a state file could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("file is {0} bytes long, shorter than the {HEADER_LEN}-byte header")]
    Truncated(usize),
    #[error("bad magic (not a trustlaunch vTPM state file, or a state blob of another type)")]
    BadMagic,
    #[error("unsupported format version {0} (this build reads version {FORMAT_VERSION})")]
    Version(u32),
    #[error("unknown flags {0:#x}")]
    Flags(u32),
    #[error("payload is encrypted but no key provider is configured")]
    Encrypted,
    #[error("header says {expected} payload bytes but the file holds {actual}")]
    Length { expected: u64, actual: u64 },
    #[error("checksum mismatch")]
    Checksum,
}

/// Encode `payload` into the state file format.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    encode_with(&MAGIC, payload)
}

/// Decode a state file, returning its payload.
pub fn decode(bytes: &[u8]) -> Result<&[u8], FormatError> {
    decode_with(&MAGIC, bytes)
}

/// Encode the engine's volatile state in the same envelope, with [`VOLATILE_MAGIC`].
pub fn encode_volatile(payload: &[u8]) -> Vec<u8> {
    encode_with(&VOLATILE_MAGIC, payload)
}

/// Decode an envelope made by [`encode_volatile`].
pub fn decode_volatile(bytes: &[u8]) -> Result<&[u8], FormatError> {
    decode_with(&VOLATILE_MAGIC, bytes)
}

fn encode_with(magic: &[u8; 8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    let digest = checksum(&out[..24], payload);
    out.extend_from_slice(&digest);
    out.extend_from_slice(payload);
    out
}

fn decode_with<'a>(magic: &[u8; 8], bytes: &'a [u8]) -> Result<&'a [u8], FormatError> {
    if bytes.len() < HEADER_LEN {
        return Err(FormatError::Truncated(bytes.len()));
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    if header[0..8] != *magic {
        return Err(FormatError::BadMagic);
    }
    let version = be_u32(&header[8..12]);
    if version != FORMAT_VERSION {
        return Err(FormatError::Version(version));
    }
    let flags = be_u32(&header[12..16]);
    if flags & FLAG_ENCRYPTED != 0 {
        return Err(FormatError::Encrypted);
    }
    if flags != 0 {
        return Err(FormatError::Flags(flags));
    }
    let expected = be_u64(&header[16..24]);
    if expected != payload.len() as u64 {
        return Err(FormatError::Length {
            expected,
            actual: payload.len() as u64,
        });
    }
    if checksum(&header[..24], payload) != header[24..56] {
        return Err(FormatError::Checksum);
    }
    Ok(payload)
}

fn checksum(header: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(header);
    h.update(payload);
    h.finalize().into()
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("state directory {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("state directory {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("state directory {0} is in use by another process (it holds the lock)")]
    Locked(PathBuf),
    #[error(
        "state file {path} is corrupt: {reason}; refusing to start (the file was left untouched)"
    )]
    Corrupt { path: PathBuf, reason: FormatError },
}

fn io_err(path: &Path, error: io::Error) -> StateDirError {
    StateDirError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A locked state directory holding one TPM's permanent state.
///
/// The lock (an `flock` on a lock file inside the directory) is held as long as this
/// value lives, so a second `StateDir::open` on the same directory, in this or another
/// process, fails with [`StateDirError::Locked`].
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    file_mode: u32,
    _lock: File,
}

impl StateDir {
    /// Default mode bits of the state file (as swtpm's `--tpmstate mode=`).
    pub const DEFAULT_MODE: u32 = 0o640;

    /// Open and lock an existing directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<StateDir, StateDirError> {
        let dir = dir.as_ref().to_path_buf();
        let meta = fs::metadata(&dir).map_err(|e| io_err(&dir, e))?;
        if !meta.is_dir() {
            return Err(StateDirError::NotADirectory(dir));
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(StateDirError::Locked(dir)),
            Err(e) => return Err(io_err(&lock_path, e.into())),
        }
        // A temporary file left by a crash mid-write is garbage: the rename never happened.
        let tmp = dir.join(TEMP_FILE);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp, e)),
        }
        Ok(StateDir {
            dir,
            file_mode: Self::DEFAULT_MODE,
            _lock: lock,
        })
    }

    /// Set the mode bits used when (re)writing the state file.
    pub fn with_file_mode(mut self, mode: u32) -> StateDir {
        self.file_mode = mode & 0o777;
        self
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The state file's path.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Read the permanent state: `None` if there is no state file yet.
    /// A file that exists but fails to decode is an error, never `None`.
    pub fn load(&self) -> Result<Option<Vec<u8>>, StateDirError> {
        let path = self.state_file();
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        let len = file.metadata().map_err(|e| io_err(&path, e))?.len();
        if len > MAX_PAYLOAD + HEADER_LEN as u64 {
            return Err(StateDirError::Corrupt {
                path,
                reason: FormatError::Length {
                    expected: MAX_PAYLOAD,
                    actual: len,
                },
            });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes).map_err(|e| io_err(&path, e))?;
        match decode(&bytes) {
            Ok(payload) => Ok(Some(payload.to_vec())),
            Err(reason) => Err(StateDirError::Corrupt { path, reason }),
        }
    }

    /// Replace the permanent state atomically: write a temporary file in the same
    /// directory, fsync it, rename it over the state file, fsync the directory.
    /// A crash at any point leaves either the old or the new state, never a mix.
    pub fn store(&self, permanent: &[u8]) -> Result<(), StateDirError> {
        let bytes = encode(permanent);
        let tmp = self.dir.join(TEMP_FILE);
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(self.file_mode)
                .open(&tmp)?;
            // The mode given at creation is filtered by the umask; make it exact.
            f.set_permissions(fs::Permissions::from_mode(self.file_mode))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, self.state_file())?;
            File::open(&self.dir)?.sync_all()
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(&self.dir, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        for payload in [&b""[..], b"x", &[0xa5u8; 5000][..]] {
            let enc = encode(payload);
            assert_eq!(enc.len(), HEADER_LEN + payload.len());
            assert_eq!(decode(&enc), Ok(payload));
        }
    }

    #[test]
    fn volatile_envelope_is_not_a_state_file() {
        let v = encode_volatile(b"volatile");
        assert_eq!(&v[..8], b"TLVTPMVO");
        assert_eq!(decode_volatile(&v), Ok(&b"volatile"[..]));
        assert_eq!(decode(&v), Err(FormatError::BadMagic));
        assert_eq!(decode_volatile(&encode(b"x")), Err(FormatError::BadMagic));
    }

    #[test]
    fn decode_rejects_damage() {
        let good = encode(b"permanent state");
        assert_eq!(decode(&good[..10]), Err(FormatError::Truncated(10)));
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert_eq!(decode(&bad), Err(FormatError::BadMagic));
        let mut bad = good.clone();
        bad[11] = 2;
        assert_eq!(decode(&bad), Err(FormatError::Version(2)));
        let mut bad = good.clone();
        bad[15] = 1;
        assert_eq!(decode(&bad), Err(FormatError::Encrypted));
        let mut bad = good.clone();
        bad[14] = 1;
        assert_eq!(decode(&bad), Err(FormatError::Flags(0x100)));
        let mut bad = good.clone();
        bad.push(0);
        assert!(matches!(decode(&bad), Err(FormatError::Length { .. })));
        let bad = &good[..good.len() - 1];
        assert!(matches!(decode(bad), Err(FormatError::Length { .. })));
        // Every single-byte flip in the checksum or payload is caught.
        for i in 24..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode(&bad), Err(FormatError::Checksum), "flip at {i}");
        }
    }

    #[test]
    fn store_load_round_trip_and_replace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = StateDir::open(dir.path()).expect("open");
        assert_eq!(sd.load().expect("load"), None);
        sd.store(b"one").expect("store");
        assert_eq!(sd.load().expect("load"), Some(b"one".to_vec()));
        sd.store(b"two, longer").expect("store");
        assert_eq!(sd.load().expect("load"), Some(b"two, longer".to_vec()));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n == TEMP_FILE), "{names:?}");
        let mode = fs::metadata(sd.state_file())
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, StateDir::DEFAULT_MODE);
    }

    #[test]
    fn corrupt_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = StateDir::open(dir.path()).expect("open");
        sd.store(b"state").expect("store");
        let path = sd.state_file();
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).expect("write");
        let err = sd.load().expect_err("corrupt must fail");
        assert!(matches!(
            err,
            StateDirError::Corrupt {
                reason: FormatError::Checksum,
                ..
            }
        ));
        assert!(err.to_string().contains("refusing to start"), "{err}");
        assert_eq!(
            fs::read(&path).expect("read"),
            bytes,
            "corrupt file untouched"
        );
    }

    #[test]
    fn stale_temp_file_is_ignored_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let sd = StateDir::open(dir.path()).expect("open");
            sd.store(b"committed").expect("store");
        }
        // Simulate a crash after writing the temporary file but before the rename.
        fs::write(dir.path().join(TEMP_FILE), encode(b"half-written")).expect("write");
        let sd = StateDir::open(dir.path()).expect("open");
        assert_eq!(sd.load().expect("load"), Some(b"committed".to_vec()));
        assert!(!dir.path().join(TEMP_FILE).exists());
    }

    #[test]
    fn second_open_is_locked_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = StateDir::open(dir.path()).expect("open");
        let err = StateDir::open(dir.path()).expect_err("must be locked");
        assert!(matches!(err, StateDirError::Locked(_)), "{err}");
        drop(first);
        StateDir::open(dir.path()).expect("lock released on drop");
    }

    #[test]
    fn missing_directory_and_file_path_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        assert!(matches!(
            StateDir::open(&missing),
            Err(StateDirError::Io { .. })
        ));
        let file = dir.path().join("file");
        fs::write(&file, b"").expect("write");
        assert!(matches!(
            StateDir::open(&file),
            Err(StateDirError::NotADirectory(_))
        ));
    }

    #[test]
    fn custom_file_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = StateDir::open(dir.path())
            .expect("open")
            .with_file_mode(0o600);
        sd.store(b"x").expect("store");
        let mode = fs::metadata(sd.state_file())
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}
