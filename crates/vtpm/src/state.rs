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
//! | 12     | 4    | flags; bit 0 = payload encrypted, others must be 0            |
//! | 16     | 8    | payload length `N`                                             |
//! | 24     | 32   | SHA-256 over bytes `0..24` followed by the payload             |
//! | 56     | N    | payload: [`tpm::Tpm::permanent_state`]                         |
//!
//! The file is exactly `56 + N` bytes long; anything else is corruption.
//!
//! The same envelope, with magic `TLVTPMVO`, carries the engine's volatile state in
//! state blobs ([`encode_volatile`], [`decode_volatile`]; see [`crate::stateblob`]).
//!
//! # Encryption at rest
//!
//! A [`StateDir`] given a key ([`StateDir::with_key`], from a [`KeyProvider`]) writes
//! the payload encrypted with AES-256-GCM and sets flag bit 0: the payload is then a
//! fresh random 96-bit nonce, the ciphertext, and the 16-byte GCM tag. The header's
//! bytes `0..24` (magic, version, flags, payload length) are the associated data, so
//! the flag and the length are authenticated too; the SHA-256 checksum still covers the
//! whole file, so damage is told apart from a wrong key. An encrypted file without a
//! key, or one that does not decrypt with the key given, is refused and left untouched.
//! A plaintext file read with a key is refused too (whoever can write the directory
//! could otherwise replace an encrypted state with a forged plaintext one), unless the
//! upgrade is asked for ([`StateDir::allow_plaintext_upgrade`], the CLI's
//! `--encrypt-existing-state`): then it is loaded and [`Instance`](crate::Instance)
//! rewrites it encrypted at once. State blobs (snapshots, migration) stay plaintext.
//!
//! # The previous copy
//!
//! Each save keeps the state it replaces as `tpm2-state.bin.prev`: the new state is
//! written to a temporary file and fsynced, the current file is hard-linked to a second
//! temporary name that is renamed over `.prev`, then the temporary file is renamed over
//! the current one and the directory fsynced. Every step is a rename of a complete,
//! fsynced file, so a crash at any point leaves a good current file and a good `.prev`.
//! A current file that fails to load is never replaced silently: the instance refuses
//! to start, and [`StateDir::restore_previous`] (the CLI's `--restore-previous`) moves it
//! aside as `tpm2-state.bin.bad` and puts `.prev` in its place, if `.prev` loads.

use crate::key::{KeyError, KeyProvider};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Magic bytes at the start of a state file.
pub const MAGIC: [u8; 8] = *b"TLVTPMST";
/// Magic bytes of a volatile-state blob (same envelope, different contents).
pub const VOLATILE_MAGIC: [u8; 8] = *b"TLVTPMVO";
/// The state file format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the fixed header in front of the payload.
pub const HEADER_LEN: usize = 56;
/// Flag bit: the payload is encrypted (AES-256-GCM: nonce, ciphertext, tag).
pub const FLAG_ENCRYPTED: u32 = 1;

/// Name of the state file inside the state directory.
pub const STATE_FILE: &str = "tpm2-state.bin";
/// The state the last save replaced, kept as a fallback.
pub const PREV_FILE: &str = "tpm2-state.bin.prev";
/// Where [`StateDir::restore_previous`] moves a current file that does not load.
pub const BAD_FILE: &str = "tpm2-state.bin.bad";
const TEMP_FILE: &str = ".tpm2-state.bin.tmp";
const PREV_TEMP_FILE: &str = ".tpm2-state.bin.prev.tmp";
/// The `.prev` a save replaces, kept to be the temporary file of the next save.
const NEXT_TEMP_FILE: &str = ".tpm2-state.bin.next";
/// GCM nonce and tag sizes.
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
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
    #[error("state is encrypted; no key given")]
    Encrypted,
    #[error("state does not decrypt with this key: wrong key or corrupt file")]
    Decrypt,
    #[error(
        "state is not encrypted but a key was given (give --encrypt-existing-state once to \
         encrypt it)"
    )]
    Plaintext,
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
    decode_envelope(magic, bytes, false).map(|(_, payload)| payload)
}

/// Check an envelope, returning its flags and payload. Without `allow_encrypted`, an
/// encrypted payload is refused before anything else is checked.
fn decode_envelope<'a>(
    magic: &[u8; 8],
    bytes: &'a [u8],
    allow_encrypted: bool,
) -> Result<(u32, &'a [u8]), FormatError> {
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
    if flags & FLAG_ENCRYPTED != 0 && !allow_encrypted {
        return Err(FormatError::Encrypted);
    }
    if flags & !FLAG_ENCRYPTED != 0 {
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
    Ok((flags, payload))
}

/// Encode `plaintext` as an encrypted state file: flag bit 0 set, the payload a random
/// nonce followed by the AES-256-GCM ciphertext and tag, header bytes `0..24` as the
/// associated data.
pub fn encode_encrypted(key: &[u8; 32], plaintext: &[u8]) -> Result<Vec<u8>, StateDirError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).map_err(|e| StateDirError::Entropy(e.to_string()))?;
    let cipher = Aes256Gcm::new(key.into());
    let len = NONCE_LEN + plaintext.len() + TAG_LEN;
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&FLAG_ENCRYPTED.to_be_bytes());
    out.extend_from_slice(&(len as u64).to_be_bytes());
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &out[..24],
            },
        )
        .map_err(|_| StateDirError::Entropy("AES-GCM encryption failed".into()))?;
    let mut payload = Vec::with_capacity(len);
    payload.extend_from_slice(&nonce);
    payload.extend_from_slice(&sealed);
    let digest = checksum(&out[..24], &payload);
    out.extend_from_slice(&digest);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decode a state file, plaintext or encrypted: the payload, and whether it was
/// encrypted. An encrypted file needs `key`.
pub fn decode_file(bytes: &[u8], key: Option<&[u8; 32]>) -> Result<(Vec<u8>, bool), FormatError> {
    let (flags, payload) = decode_envelope(&MAGIC, bytes, true)?;
    if flags & FLAG_ENCRYPTED == 0 {
        return Ok((payload.to_vec(), false));
    }
    let key = key.ok_or(FormatError::Encrypted)?;
    if payload.len() < NONCE_LEN + TAG_LEN {
        return Err(FormatError::Decrypt);
    }
    let (nonce, sealed) = payload.split_at(NONCE_LEN);
    let plain = Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &bytes[..24],
            },
        )
        .map_err(|_| FormatError::Decrypt)?;
    Ok((plain, true))
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
        "state file {path} is corrupt: {reason}; refusing to start (the file was left untouched; \
         {PREV_FILE}, if present, holds the state before the last save: --restore-previous \
         falls back to it)"
    )]
    Corrupt { path: PathBuf, reason: FormatError },
    #[error("state file {path}: {reason}; refusing to start (the file was left untouched)")]
    Undecryptable { path: PathBuf, reason: FormatError },
    #[error(
        "state file {path} is missing but {prev} exists; refusing to manufacture a new TPM \
         in its place (--restore-previous falls back to {PREV_FILE})"
    )]
    Missing { path: PathBuf, prev: PathBuf },
    #[error("state encryption key: {0}")]
    Key(#[from] KeyError),
    #[error("no entropy from the operating system: {0}")]
    Entropy(String),
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
    key: Option<[u8; 32]>,
    allow_plaintext: bool,
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
        // A second name of the current file left by a crash mid-save is garbage. The
        // temporary files are kept: never read, every save truncates one before writing.
        let tmp = dir.join(PREV_TEMP_FILE);
        remove_if_exists(&tmp).map_err(|e| io_err(&tmp, e))?;
        Ok(StateDir {
            dir,
            file_mode: Self::DEFAULT_MODE,
            key: None,
            allow_plaintext: false,
            _lock: lock,
        })
    }

    /// Encrypt the state at rest with the key `provider` gives for this directory (the
    /// instance name is the directory's path).
    pub fn with_key(mut self, provider: &dyn KeyProvider) -> Result<StateDir, StateDirError> {
        self.key = Some(provider.key(&self.dir.to_string_lossy())?);
        Ok(self)
    }

    /// Encrypt the state at rest with the key `provider` gives for `instance` (the vTPM
    /// host names instances, so a state file copied into another instance's directory
    /// does not decrypt there).
    pub fn with_key_for(
        mut self,
        provider: &dyn KeyProvider,
        instance: &str,
    ) -> Result<StateDir, StateDirError> {
        self.key = Some(provider.key(instance)?);
        Ok(self)
    }

    /// With a key, accept a plaintext state file (it is encrypted when next saved).
    pub fn allow_plaintext_upgrade(mut self, allow: bool) -> StateDir {
        self.allow_plaintext = allow;
        self
    }

    /// Whether a key was given.
    pub fn encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// The previous state's path.
    pub fn prev_file(&self) -> PathBuf {
        self.dir.join(PREV_FILE)
    }

    /// Whether the current file is plaintext while a key is given (so the next save
    /// encrypts it).
    pub fn needs_encryption(&self) -> Result<bool, StateDirError> {
        if self.key.is_none() {
            return Ok(false);
        }
        let path = self.state_file();
        match read_limited(&path)? {
            Some(bytes) => Ok(decode_envelope(&MAGIC, &bytes, true)
                .is_ok_and(|(flags, _)| flags & FLAG_ENCRYPTED == 0)),
            None => Ok(false),
        }
    }

    fn decode_at(&self, path: &Path, bytes: &[u8]) -> Result<Vec<u8>, StateDirError> {
        match decode_file(bytes, self.key.as_ref()) {
            Ok((_, false)) if self.key.is_some() && !self.allow_plaintext => {
                Err(StateDirError::Undecryptable {
                    path: path.to_path_buf(),
                    reason: FormatError::Plaintext,
                })
            }
            Ok((payload, _)) => Ok(payload),
            Err(reason @ (FormatError::Encrypted | FormatError::Decrypt)) => {
                Err(StateDirError::Undecryptable {
                    path: path.to_path_buf(),
                    reason,
                })
            }
            Err(reason) => Err(StateDirError::Corrupt {
                path: path.to_path_buf(),
                reason,
            }),
        }
    }

    /// Fall back to the previous state if the current file does not load: the current
    /// file (if any) is moved to [`BAD_FILE`] and a copy of [`PREV_FILE`] takes its
    /// place. Returns `false`, changing nothing, if the current file loads. Fails,
    /// changing nothing, if the previous state does not load either (with this key).
    pub fn restore_previous(&self) -> Result<bool, StateDirError> {
        if self.load().is_ok() {
            return Ok(false);
        }
        let prev = self.prev_file();
        let Some(bytes) = read_limited(&prev)? else {
            return Err(io_err(
                &prev,
                io::Error::new(io::ErrorKind::NotFound, "no previous state to restore"),
            ));
        };
        self.decode_at(&prev, &bytes)?;
        let cur = self.state_file();
        let bad = self.dir.join(BAD_FILE);
        match fs::rename(&cur, &bad) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&cur, e)),
        }
        self.write_current(&bytes)?;
        Ok(true)
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

    /// Create the temporary file the first save writes, ahead of that save (see
    /// [`StateDir::store`]: saves recycle files rather than create them).
    pub fn prepare(&self) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(self.file_mode)
            .open(self.dir.join(TEMP_FILE))
            .map(drop)
    }

    /// Follow the directory to `dir` after it (or a parent) was renamed there; the lock
    /// stays held.
    pub fn relocate(&mut self, dir: PathBuf) {
        self.dir = dir;
    }

    /// The state file's path.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Read the permanent state: `None` if there is no state file yet.
    /// A file that exists but fails to decode is an error, never `None`.
    /// A missing state file beside an existing [`PREV_FILE`] is an error too: the TPM
    /// is never silently replaced by a new one.
    pub fn load(&self) -> Result<Option<Vec<u8>>, StateDirError> {
        let path = self.state_file();
        match read_limited(&path)? {
            Some(bytes) => self.decode_at(&path, &bytes).map(Some),
            None => {
                let prev = self.prev_file();
                if prev.exists() {
                    return Err(StateDirError::Missing { path, prev });
                }
                Ok(None)
            }
        }
    }

    /// Replace the permanent state atomically, keeping the replaced state as
    /// [`PREV_FILE`]: write a temporary file in the same directory, fsync it, link the
    /// current file to a second temporary name and rename that over `.prev`, rename the
    /// temporary file over the state file, fsync the directory. A crash at any point
    /// leaves either the old or the new state, never a mix, and a good `.prev` (missing
    /// only between two renames of one save, when the current file is good).
    ///
    /// Files are recycled, not created: the `.prev` being replaced becomes the next save's
    /// temporary file. Allocating an inode costs far more than writing 1 KiB on a busy
    /// file system, and a save then allocates none.
    pub fn store(&self, permanent: &[u8]) -> Result<(), StateDirError> {
        let bytes = match &self.key {
            Some(key) => encode_encrypted(key, permanent)?,
            None => encode(permanent),
        };
        self.write_current(&bytes)
    }

    fn write_current(&self, bytes: &[u8]) -> Result<(), StateDirError> {
        let tmp = self.dir.join(TEMP_FILE);
        let cur = self.state_file();
        let result = (|| {
            let mut f = self.open_temp(&tmp)?;
            // The mode given at creation is filtered by the umask; make it exact.
            f.set_permissions(fs::Permissions::from_mode(self.file_mode))?;
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            self.rotate_prev(&cur)?;
            fs::rename(&tmp, &cur)?;
            match fs::rename(self.dir.join(NEXT_TEMP_FILE), &tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            File::open(&self.dir)?.sync_all()
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(&self.dir, e)
        })
    }
}

impl StateDir {
    /// Open the temporary file empty. A recycled file is used only if it has no other
    /// name: a crash between two renames of a save can leave `.prev` a second name of
    /// the current file, and writing through a shared inode would change both.
    fn open_temp(&self, tmp: &Path) -> io::Result<File> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(self.file_mode)
            .open(tmp)?;
        let f = if f.metadata()?.nlink() == 1 {
            f
        } else {
            drop(f);
            fs::remove_file(tmp)?;
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(self.file_mode)
                .open(tmp)?
        };
        f.set_len(0)?;
        Ok(f)
    }

    /// Make `.prev` the current file's contents (a hard link, or a copy where the file
    /// system has none). Nothing to do before the first save.
    fn rotate_prev(&self, cur: &Path) -> io::Result<()> {
        let prev_tmp = self.dir.join(PREV_TEMP_FILE);
        remove_if_exists(&prev_tmp)?;
        match fs::hard_link(cur, &prev_tmp) {
            // Recycle the `.prev` being replaced unless it is another name of the current
            // file (left so by a crash mid-save).
            Ok(()) => match fs::metadata(self.prev_file()) {
                Ok(m) if m.nlink() == 1 => {
                    fs::rename(self.prev_file(), self.dir.join(NEXT_TEMP_FILE))?
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(_) => {
                let bytes = match fs::read(cur) {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                };
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(self.file_mode)
                    .open(&prev_tmp)?;
                f.set_permissions(fs::Permissions::from_mode(self.file_mode))?;
                f.write_all(&bytes)?;
                f.sync_all()?;
            }
        }
        fs::rename(&prev_tmp, self.prev_file())
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Read a state file: `None` if it does not exist; too large a file is corrupt.
fn read_limited(path: &Path) -> Result<Option<Vec<u8>>, StateDirError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let len = file.metadata().map_err(|e| io_err(path, e))?.len();
    if len > MAX_PAYLOAD + HEADER_LEN as u64 {
        return Err(StateDirError::Corrupt {
            path: path.to_path_buf(),
            reason: FormatError::Length {
                expected: MAX_PAYLOAD,
                actual: len,
            },
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes).map_err(|e| io_err(path, e))?;
    Ok(Some(bytes))
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
    fn stale_temp_file_is_ignored_then_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let sd = StateDir::open(dir.path()).expect("open");
            sd.store(b"committed").expect("store");
        }
        // Simulate a crash after writing the temporary file but before the rename: a
        // longer file than the next save writes, so leftovers would show.
        fs::write(dir.path().join(TEMP_FILE), encode(&[7u8; 4096])).expect("write");
        let sd = StateDir::open(dir.path()).expect("open");
        assert_eq!(sd.load().expect("load"), Some(b"committed".to_vec()));
        sd.store(b"next").expect("store");
        assert_eq!(sd.load().expect("load"), Some(b"next".to_vec()));
        assert_eq!(
            fs::read(dir.path().join(STATE_FILE)).expect("read"),
            encode(b"next"),
            "the reused temporary file was cut to the new state's length"
        );
    }

    #[test]
    fn a_prev_left_as_a_second_name_of_the_current_file_is_not_recycled() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = StateDir::open(dir.path()).expect("open");
        for v in [b"one", b"two"] {
            sd.store(v).expect("store");
        }
        // The state a crash leaves between the `.prev` and current-file renames.
        let prev = dir.path().join(PREV_FILE);
        let cur = dir.path().join(STATE_FILE);
        fs::remove_file(&prev).expect("rm");
        fs::hard_link(&cur, &prev).expect("link");
        let ino = |p: &Path| fs::metadata(p).map(|m| m.ino()).ok();
        for i in 0..6u8 {
            let before = fs::read(&cur).expect("read");
            sd.store(&[i; 64]).expect("store");
            assert_eq!(sd.load().expect("load"), Some(vec![i; 64]));
            assert_eq!(fs::read(&prev).expect("prev"), before, "save {i}: .prev");
            let tmp = dir.path().join(TEMP_FILE);
            assert_ne!(
                ino(&tmp),
                ino(&cur),
                "save {i}: the temp file is the current one"
            );
            assert_ne!(
                ino(&tmp),
                ino(&prev),
                "save {i}: the temp file is the previous one"
            );
        }
    }

    #[test]
    fn saves_recycle_files_instead_of_creating_them() {
        use std::collections::BTreeSet;
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = StateDir::open(dir.path()).expect("open");
        sd.prepare().expect("prepare");
        let inodes = || -> BTreeSet<u64> {
            fs::read_dir(dir.path())
                .expect("read_dir")
                .map(|e| e.expect("entry").metadata().expect("metadata").ino())
                .collect()
        };
        let ino = |name: &str| fs::metadata(dir.path().join(name)).expect(name).ino();
        // The prepared file takes the first save; the current, previous and temporary
        // files exist from the third on.
        sd.store(b"first").expect("store");
        sd.store(b"second").expect("store");
        sd.store(b"third").expect("store");
        let after_three = inodes();
        for i in 0..10u8 {
            let prev_ino = ino(PREV_FILE);
            let cur_ino = ino(STATE_FILE);
            sd.store(&[i; 100]).expect("store");
            assert_eq!(sd.load().expect("load"), Some(vec![i; 100]));
            assert_eq!(
                ino(PREV_FILE),
                cur_ino,
                "the replaced state is the new .prev"
            );
            assert_eq!(
                ino(TEMP_FILE),
                prev_ino,
                "the old .prev waits as the next temp file"
            );
            assert_eq!(
                StateDir::open(dir.path())
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(StateDirError::Locked(dir.path().to_path_buf()).to_string())
            );
        }
        assert_eq!(
            inodes(),
            after_three,
            "no file was created after the third save"
        );
        let prev = fs::read(dir.path().join(PREV_FILE)).expect("read prev");
        assert_eq!(decode(&prev).expect("decode"), &[8u8; 100][..]);
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

    const KEY: [u8; 32] = [0x42; 32];
    const SECRET: &[u8] = b"NV-SECRET-VALUE-0123456789abcdef";

    fn keyed(dir: &Path, key: [u8; 32]) -> StateDir {
        StateDir::open(dir)
            .expect("open")
            .with_key(&crate::key::FileKeyProvider::from_key(key))
            .expect("key")
    }

    #[test]
    fn encrypted_round_trip_hides_the_plaintext() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = keyed(dir.path(), KEY);
        sd.store(SECRET).expect("store");
        sd.store(&[SECRET, b"second"].concat()).expect("store");
        for path in [sd.state_file(), sd.prev_file()] {
            let bytes = fs::read(&path).expect("read");
            assert_eq!(be_u32(&bytes[12..16]), FLAG_ENCRYPTED);
            assert!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET),
                "plaintext in {}",
                path.display()
            );
        }
        assert_eq!(sd.load().expect("load"), Some([SECRET, b"second"].concat()));
        // Same plaintext, fresh nonce: different ciphertext.
        let a = encode_encrypted(&KEY, SECRET).expect("enc");
        let b = encode_encrypted(&KEY, SECRET).expect("enc");
        assert_ne!(a, b);
        assert_eq!(decode_file(&a, Some(&KEY)), Ok((SECRET.to_vec(), true)));
    }

    #[test]
    fn wrong_key_or_no_key_is_refused_and_file_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        keyed(dir.path(), KEY).store(SECRET).expect("store");
        let path = dir.path().join(STATE_FILE);
        let before = fs::read(&path).expect("read");
        let err = keyed(dir.path(), [7; 32]).load().expect_err("wrong key");
        assert!(
            err.to_string()
                .contains("state does not decrypt with this key: wrong key or corrupt file"),
            "{err}"
        );
        let err = StateDir::open(dir.path())
            .expect("open")
            .load()
            .expect_err("no key");
        assert!(
            err.to_string().contains("state is encrypted; no key given"),
            "{err}"
        );
        assert_eq!(fs::read(&path).expect("read"), before, "file untouched");
    }

    #[test]
    fn tampered_ciphertext_is_refused() {
        let good = encode_encrypted(&KEY, SECRET).expect("enc");
        for i in HEADER_LEN..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            // Caught by the checksum...
            assert_eq!(decode_file(&bad, Some(&KEY)), Err(FormatError::Checksum));
            // ...and by GCM when the checksum is recomputed to match.
            let digest = checksum(&bad[..24], &bad[HEADER_LEN..]);
            bad[24..56].copy_from_slice(&digest);
            assert_eq!(
                decode_file(&bad, Some(&KEY)),
                Err(FormatError::Decrypt),
                "at {i}"
            );
        }
        // Clearing the encrypted flag (checksum recomputed) makes a "plaintext" file,
        // which a keyed state directory refuses.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bad = good.clone();
        bad[15] = 0;
        let digest = checksum(&bad[..24], &bad[HEADER_LEN..]);
        bad[24..56].copy_from_slice(&digest);
        fs::write(dir.path().join(STATE_FILE), &bad).expect("write");
        let err = keyed(dir.path(), KEY).load().expect_err("downgrade");
        assert!(matches!(
            err,
            StateDirError::Undecryptable {
                reason: FormatError::Plaintext,
                ..
            }
        ));
    }

    #[test]
    fn plaintext_state_with_a_key_needs_encryption() {
        let dir = tempfile::tempdir().expect("tempdir");
        StateDir::open(dir.path())
            .expect("open")
            .store(SECRET)
            .expect("store");
        let err = keyed(dir.path(), KEY)
            .load()
            .expect_err("plaintext refused");
        assert!(
            err.to_string().contains("--encrypt-existing-state"),
            "{err}"
        );
        let sd = keyed(dir.path(), KEY).allow_plaintext_upgrade(true);
        assert!(sd.needs_encryption().expect("check"));
        assert_eq!(sd.load().expect("load"), Some(SECRET.to_vec()));
        sd.store(SECRET).expect("store");
        assert!(!sd.needs_encryption().expect("check"));
    }

    #[test]
    fn previous_copy_rotates_and_restores() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = keyed(dir.path(), KEY);
        assert!(!sd.prev_file().exists());
        sd.store(b"one").expect("store");
        assert!(!sd.prev_file().exists());
        sd.store(b"two").expect("store");
        sd.store(b"three").expect("store");
        let prev = fs::read(sd.prev_file()).expect("prev");
        assert_eq!(decode_file(&prev, Some(&KEY)), Ok((b"two".to_vec(), true)));
        // Nothing to restore while the current file loads.
        assert!(!sd.restore_previous().expect("restore"));
        assert_eq!(sd.load().expect("load"), Some(b"three".to_vec()));
        // Corrupt the current file: refused, then restored from .prev on request.
        let mut bytes = fs::read(sd.state_file()).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(sd.state_file(), &bytes).expect("write");
        let err = sd.load().expect_err("corrupt");
        assert!(err.to_string().contains("--restore-previous"), "{err}");
        // A wrong key restores nothing.
        drop(sd);
        let wrong = keyed(dir.path(), [9; 32]);
        assert!(wrong.restore_previous().is_err());
        assert_eq!(fs::read(wrong.state_file()).expect("read"), bytes);
        drop(wrong);
        let sd = keyed(dir.path(), KEY);
        assert!(sd.restore_previous().expect("restore"));
        assert_eq!(sd.load().expect("load"), Some(b"two".to_vec()));
        assert_eq!(fs::read(dir.path().join(BAD_FILE)).expect("bad"), bytes);
    }

    #[test]
    fn missing_current_beside_prev_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = StateDir::open(dir.path()).expect("open");
        sd.store(b"one").expect("store");
        sd.store(b"two").expect("store");
        fs::remove_file(sd.state_file()).expect("rm");
        assert!(matches!(sd.load(), Err(StateDirError::Missing { .. })));
        assert!(sd.restore_previous().expect("restore"));
        assert_eq!(sd.load().expect("load"), Some(b"one".to_vec()));
    }
}
