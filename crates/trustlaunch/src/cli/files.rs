//! Reading whole input files fast.
//!
//! A large regular file is mapped read-only with its pages populated in the same call: no
//! buffer to fault in and fill, no copy. Reading the 1.6 MB a whole-process `secureboot
//! verify` of shim takes cost 0.45-0.7 ms into a buffer and 0.05 ms mapped. A mapped file
//! that another process truncates would kill this one with SIGBUS when a vanished page is
//! touched; a handler turns that into the same kind of error as any other I/O failure
//! (exit 2, naming the file) instead of a crash.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Files smaller than this are read: a mapping costs more than copying a few pages.
const MAP_AT_LEAST: u64 = 64 * 1024;

/// An input file's contents.
pub enum Contents {
    Read(Vec<u8>),
    Mapped(Mapping),
}

impl Deref for Contents {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Contents::Read(v) => v,
            Contents::Mapped(m) => m,
        }
    }
}

impl Contents {
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Contents::Read(v) => v,
            Contents::Mapped(m) => m.to_vec(),
        }
    }
}

/// The contents of `path`: mapped when it is a regular file of at least 64 KiB, read
/// otherwise (small files, pipes, devices, or when mapping fails).
pub fn read(path: &Path) -> io::Result<Contents> {
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    if meta.is_file() && meta.len() >= MAP_AT_LEAST {
        if let Some(m) = usize::try_from(meta.len())
            .ok()
            .and_then(|len| Mapping::new(&f, len, path))
        {
            return Ok(Contents::Mapped(m));
        }
    }
    let len = usize::try_from(meta.len()).unwrap_or(0);
    // One byte more than the size, so that a file that did not grow is read without the
    // buffer being reallocated.
    let mut buf = Vec::with_capacity(len.saturating_add(1));
    f.read_to_end(&mut buf)?;
    Ok(Contents::Read(buf))
}

/// A private read-only mapping of a whole file, registered with the SIGBUS guard while it
/// lives.
pub struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
    slot: Option<usize>,
}

impl Mapping {
    fn new(f: &File, len: usize, path: &Path) -> Option<Mapping> {
        install_guard();
        // SAFETY: a fresh mapping chosen by the kernel (no address hint), of a file this
        // function holds open; it is unmapped only by Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        let message = format!(
            "error: reading {}: the file shrank while it was being read\n",
            path.display()
        );
        let slot = register(ptr as usize, len, message);
        if slot.is_none() {
            // Every guard slot in use: not guarded, so read the file instead.
            // SAFETY: the mapping made just above, not referenced anywhere.
            unsafe { libc::munmap(ptr, len) };
            return None;
        }
        Some(Mapping { ptr, len, slot })
    }
}

impl Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live PROT_READ mapping of `len` bytes owned by self; this
        // process never writes it. Another process may change the file under it: the bytes
        // may then change (as a concurrent write changes what read(2) returns) and a page
        // cut off by truncation raises SIGBUS, which the guard turns into an exit.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            unregister(slot);
        }
        // SAFETY: the mapping this value owns; no borrow of it outlives self.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// The mapped ranges the SIGBUS handler knows, with the message each one exits with. A slot
/// is claimed by swapping its start from 0; the handler reads only atomics.
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    message: AtomicPtr<u8>,
    message_len: AtomicUsize,
}

const SLOTS: usize = 16;
#[allow(clippy::declare_interior_mutable_const)] // only to initialise the array below
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    message: AtomicPtr::new(std::ptr::null_mut()),
    message_len: AtomicUsize::new(0),
};
static GUARDED: [Slot; SLOTS] = [EMPTY; SLOTS];

fn register(start: usize, len: usize, message: String) -> Option<usize> {
    let (i, slot) = GUARDED.iter().enumerate().find(|(_, s)| {
        s.start
            .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    })?;
    // The message is leaked: a handler may read it at any moment, and a command maps a
    // handful of files at most.
    let message: &'static mut str = message.leak();
    slot.message_len.store(message.len(), Ordering::Release);
    slot.message.store(message.as_mut_ptr(), Ordering::Release);
    slot.len.store(len, Ordering::Release);
    slot.start.store(start, Ordering::Release);
    Some(i)
}

fn unregister(i: usize) {
    if let Some(slot) = GUARDED.get(i) {
        slot.start.store(0, Ordering::Release);
    }
}

/// The SIGBUS action before the guard's (Rust's runtime installs one), restored for any
/// fault outside a guarded mapping.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

fn install_guard() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: plain sigaction calls; the handler only reads atomics and calls the
        // async-signal-safe write(2), _exit(2) and sigaction(2).
        unsafe {
            let mut previous: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut previous);
            let _ = PREVIOUS.set(previous);
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    });
}

extern "C" fn on_sigbus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    for slot in &GUARDED {
        let start = slot.start.load(Ordering::Acquire);
        let len = slot.len.load(Ordering::Acquire);
        if start != 0 && start != usize::MAX && addr >= start && addr - start < len {
            let message = slot.message.load(Ordering::Acquire);
            let message_len = slot.message_len.load(Ordering::Acquire);
            // SAFETY: write(2) and _exit(2) are async-signal-safe; the message is a leaked
            // string of message_len bytes, published before the slot's start.
            unsafe {
                libc::write(2, message.cast(), message_len);
                libc::_exit(2);
            }
        }
    }
    // Not a guarded mapping: the action that was there before, as if this handler had never
    // been installed (returning re-runs the faulting access under it).
    // SAFETY: restoring a saved disposition, or the default one; sigaction(2) and signal(2)
    // are async-signal-safe.
    unsafe {
        match PREVIOUS.get() {
            Some(previous) => {
                libc::sigaction(libc::SIGBUS, previous, std::ptr::null_mut());
            }
            None => {
                libc::signal(libc::SIGBUS, libc::SIG_DFL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    #[test]
    fn reads_small_large_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [0usize, 5, 65_535, 65_536, 70_000, 1_048_577] {
            let p = dir.path().join(format!("f{len}"));
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&p, &data).expect("write");
            let got = super::read(&p).expect("read");
            assert_eq!(
                matches!(got, super::Contents::Mapped(_)),
                len >= 65_536,
                "{len} bytes mapped only from 64 KiB"
            );
            assert_eq!(&*got, &data[..], "{len} bytes");
            assert_eq!(got.into_vec(), data, "{len} bytes as a vector");
        }
        assert!(super::read(&dir.path().join("missing")).is_err());
        // More files open at once than the guard has slots: the rest are read.
        let p = dir.path().join("f70000");
        let all: Vec<_> = (0..40).map(|_| super::read(&p).expect("read")).collect();
        assert!(all.iter().all(|c| c.len() == 70_000));
        assert!(all.iter().any(|c| matches!(c, super::Contents::Read(_))));
    }

    /// A mapped input truncated by another process: touching a vanished page ends the
    /// process with exit 2 and an error naming the file, not a SIGBUS crash. Runs itself
    /// again as a child process (this same test, told so by an environment variable).
    #[test]
    fn a_file_truncated_while_mapped_is_an_error_not_a_crash() {
        const CHILD: &str = "TRUSTLAUNCH_TEST_TRUNCATED_MAPPING";
        if let Some(path) = std::env::var_os(CHILD) {
            let path = std::path::PathBuf::from(path);
            let contents = super::read(&path).expect("read");
            assert!(matches!(contents, super::Contents::Mapped(_)));
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(0))
                .expect("truncate");
            let last = std::hint::black_box(&contents[..])[contents.len() - 1];
            panic!("read byte {last} of a truncated mapping");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shrinking.efi");
        std::fs::write(&path, vec![0x5a; 300_000]).expect("write");
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "cli::files::tests::a_file_truncated_while_mapped_is_an_error_not_a_crash",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, &path)
            .output()
            .expect("run the child");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "child: {:?}\n{stderr}",
            out.status
        );
        assert!(
            stderr.contains(&format!(
                "error: reading {}: the file shrank while it was being read",
                path.display()
            )),
            "{stderr}"
        );
    }
}
