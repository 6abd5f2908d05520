//! Turning parsed options into live resources: the log sink and the pid file.

use crate::log::Log;
use crate::options::{LogOption, LogTarget, PidOption};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Open an inherited file descriptor for writing without taking it over: the
/// descriptor is reopened through `/proc/self/fd`, which works for files and pipes
/// (not for sockets) and needs no `unsafe`.
fn reopen_fd(fd: i32, append: bool) -> io::Result<File> {
    let path = PathBuf::from(format!("/proc/self/fd/{fd}"));
    OpenOptions::new()
        .write(true)
        .append(append)
        .open(&path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("file descriptor {fd} cannot be opened for writing: {e}"),
            )
        })
}

/// Open the log an `--log` option describes. Without `--log`, use [`Log::stderr`].
pub fn open_log(opt: &LogOption) -> io::Result<Log> {
    let prefix = opt.prefix.clone();
    match &opt.target {
        LogTarget::Suppressed => Ok(Log::none()),
        LogTarget::File { path, truncate } => {
            let mut o = OpenOptions::new();
            o.write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
            if *truncate {
                o.truncate(true);
            } else {
                o.append(true);
            }
            let f = o.open(path).map_err(|e| {
                io::Error::new(e.kind(), format!("log file {}: {e}", path.display()))
            })?;
            Ok(Log::file(f, opt.level, prefix))
        }
        LogTarget::Fd(fd) => Ok(Log::file(reopen_fd(*fd, true)?, opt.level, prefix)),
    }
}

/// A written pid file; a file (not an fd) is removed again when this is dropped.
#[derive(Debug)]
pub struct PidFile {
    path: Option<PathBuf>,
}

impl PidFile {
    /// Write this process's id. A named file is written atomically (temporary file
    /// and rename), so whoever sees it sees the whole number: write it only once all
    /// sockets are bound, as it signals readiness.
    pub fn write(opt: &PidOption) -> io::Result<PidFile> {
        let pid = format!("{}\n", std::process::id());
        match opt {
            PidOption::File(path) => {
                write_atomic(path, pid.as_bytes()).map_err(|e| {
                    io::Error::new(e.kind(), format!("pid file {}: {e}", path.display()))
                })?;
                Ok(PidFile {
                    path: Some(path.clone()),
                })
            }
            PidOption::Fd(fd) => {
                let mut f = reopen_fd(*fd, false)?;
                f.write_all(pid.as_bytes())?;
                Ok(PidFile { path: None })
            }
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = fs::remove_file(p);
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_written_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vtpm.pid");
        let pf = PidFile::write(&PidOption::File(path.clone())).expect("write");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            format!("{}\n", std::process::id())
        );
        drop(pf);
        assert!(!path.exists());
    }

    #[test]
    fn log_file_append_and_truncate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        fs::write(&path, "old\n").expect("write");
        let opt = LogOption {
            target: LogTarget::File {
                path: path.clone(),
                truncate: false,
            },
            level: 1,
            prefix: None,
        };
        open_log(&opt).expect("open").error("x");
        assert_eq!(fs::read_to_string(&path).expect("read"), "old\nerror: x\n");
        let opt = LogOption {
            target: LogTarget::File {
                path: path.clone(),
                truncate: true,
            },
            level: 1,
            prefix: None,
        };
        open_log(&opt).expect("open").error("y");
        assert_eq!(fs::read_to_string(&path).expect("read"), "error: y\n");
    }
}
