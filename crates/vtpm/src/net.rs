//! Sockets shared by both transports: listeners (TCP or Unix), connected streams,
//! a stop signal that wakes blocked accept loops, the per-server connection registry
//! and framed reads with a deadline.

use crate::log::Log;
use rustix::event::{poll, PollFd, PollFlags};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where a listener is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP port on an address.
    Tcp { addr: IpAddr, port: u16 },
    /// A Unix stream socket at `path`, with optional mode bits and owner.
    Unix {
        path: PathBuf,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { addr, port } => write!(f, "tcp {}", SocketAddr::new(*addr, *port)),
            Endpoint::Unix { path, .. } => write!(f, "unix {}", path.display()),
        }
    }
}

/// A bound, listening socket. A Unix socket's path is removed when the listener that
/// created it is dropped.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        cleanup: Option<PathBuf>,
    },
}

impl Listener {
    /// Bind `endpoint`. A stale Unix socket file at the path is replaced; any other kind
    /// of file there is an error.
    pub fn bind(endpoint: &Endpoint) -> io::Result<Listener> {
        match endpoint {
            Endpoint::Tcp { addr, port } => Ok(Listener::Tcp(TcpListener::bind((*addr, *port))?)),
            Endpoint::Unix {
                path,
                mode,
                uid,
                gid,
            } => {
                if let Ok(meta) = fs::symlink_metadata(path) {
                    if meta.file_type().is_socket() {
                        fs::remove_file(path)?;
                    } else {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!("{} exists and is not a socket", path.display()),
                        ));
                    }
                }
                let listener = UnixListener::bind(path)?;
                let l = Listener::Unix {
                    listener,
                    cleanup: Some(path.clone()),
                };
                fs::set_permissions(path, fs::Permissions::from_mode(mode.unwrap_or(0o770)))?;
                if uid.is_some() || gid.is_some() {
                    std::os::unix::fs::chown(path, *uid, *gid)?;
                }
                Ok(l)
            }
        }
    }

    /// Wrap an already bound TCP listener.
    pub fn from_tcp(l: TcpListener) -> Listener {
        Listener::Tcp(l)
    }

    /// Wrap an already bound Unix listener (its path is left alone on drop).
    pub fn from_unix(l: UnixListener) -> Listener {
        Listener::Unix {
            listener: l,
            cleanup: None,
        }
    }

    /// The local TCP address, for TCP listeners.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix { .. } => None,
        }
    }

    /// A printable description of the bound address.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("tcp {a}"),
                Err(_) => "tcp".into(),
            },
            Listener::Unix { listener, .. } => match listener.local_addr() {
                Ok(a) => match a.as_pathname() {
                    Some(p) => format!("unix {}", p.display()),
                    None => "unix (unnamed)".into(),
                },
                Err(_) => "unix".into(),
            },
        }
    }

    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(on),
            Listener::Unix { listener, .. } => listener.set_nonblocking(on),
        }
    }

    /// Accept one connection as a non-blocking stream, in one system call (accept4 with
    /// SOCK_NONBLOCK), for event loops.
    pub(crate) fn accept_nonblocking(&self) -> io::Result<Stream> {
        let flags = rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC;
        Ok(match self {
            Listener::Tcp(l) => Stream::Tcp(TcpStream::from(rustix::net::accept_with(l, flags)?)),
            Listener::Unix { listener, .. } => {
                Stream::Unix(UnixStream::from(rustix::net::accept_with(listener, flags)?))
            }
        })
    }

    pub(crate) fn accept(&self) -> io::Result<Stream> {
        let s = match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
            Listener::Unix { listener, .. } => Stream::Unix(listener.accept()?.0),
        };
        s.set_nonblocking(false)?;
        Ok(s)
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix { listener, .. } => listener.as_fd(),
        }
    }
}

impl Listener {
    /// Follow a bound Unix socket to `path` after its directory was renamed (so the file
    /// removed on drop is the socket's, not whatever the old path now names).
    pub fn relocate(&mut self, path: PathBuf) {
        if let Listener::Unix {
            cleanup: Some(p), ..
        } = self
        {
            *p = path;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix {
            cleanup: Some(path),
            ..
        } = self
        {
            let _ = fs::remove_file(path);
        }
    }
}

/// A connected stream socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }
    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }
    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
    pub(crate) fn unix(&self) -> Option<&UnixStream> {
        match self {
            Stream::Unix(s) => Some(s),
            Stream::Tcp(_) => None,
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl From<OwnedFd> for Stream {
    fn from(fd: OwnedFd) -> Stream {
        Stream::Unix(UnixStream::from(fd))
    }
}

struct StopInner {
    stopped: AtomicBool,
    wake_r: OwnedFd,
    wake_w: OwnedFd,
}

/// A stop signal for one server: cheap to clone, safe to trigger from any thread
/// (a signal-handling thread, a control command, a test).
#[derive(Clone)]
pub struct StopHandle {
    inner: Arc<StopInner>,
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl StopHandle {
    /// The descriptor that becomes readable once the stop is triggered, for event loops.
    pub(crate) fn wake_fd(&self) -> &OwnedFd {
        &self.inner.wake_r
    }

    /// Block until the stop is triggered.
    pub(crate) fn wait(&self) {
        while !self.is_stopped() {
            let mut fds = [PollFd::new(&self.inner.wake_r, PollFlags::IN)];
            let _ = poll(&mut fds, None);
        }
    }

    /// A new, untriggered stop signal.
    pub fn new() -> io::Result<StopHandle> {
        let (wake_r, wake_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        Ok(StopHandle {
            inner: Arc::new(StopInner {
                stopped: AtomicBool::new(false),
                wake_r,
                wake_w,
            }),
        })
    }

    /// Ask the server to stop: it stops accepting, closes its connections, saves the
    /// state and returns from `serve`.
    pub fn stop(&self) {
        if !self.inner.stopped.swap(true, Ordering::SeqCst) {
            // The byte is never read: the pipe stays readable and wakes every poller.
            let _ = rustix::io::write(&self.inner.wake_w, b"s");
        }
    }

    /// Whether [`StopHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }
}

/// Connections of one server: each runs on its own thread; on stop, their sockets
/// are shut down (which unblocks their reads) and the threads joined.
pub(crate) struct Connections {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Stream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    max: usize,
    stop: StopHandle,
}

impl Connections {
    pub(crate) fn new(max: usize, stop: StopHandle) -> Arc<Connections> {
        Arc::new(Connections {
            next: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            max,
            stop,
        })
    }

    /// Run `f` on a new thread for `stream`. Refused (the stream is closed) when the
    /// server is stopping or at its connection limit.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        name: &str,
        stream: Stream,
        log: &Log,
        f: impl FnOnce(Stream) + Send + 'static,
    ) -> bool {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            if self.stop.is_stopped() {
                return false;
            }
            if live.len() >= self.max {
                log.warn(format_args!(
                    "{name}: refusing connection: {} connections already open",
                    live.len()
                ));
                return false;
            }
            match stream.try_clone() {
                Ok(clone) => {
                    live.insert(id, clone);
                }
                Err(e) => {
                    log.warn(format_args!("{name}: cannot track connection: {e}"));
                    return false;
                }
            }
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("vtpm-{name}-{id}"))
            .spawn(move || {
                f(stream);
                me.live
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            });
        match spawned {
            Ok(handle) => {
                let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
                threads.retain(|h| !h.is_finished());
                threads.push(handle);
                true
            }
            Err(e) => {
                log.error(format_args!(
                    "{name}: cannot start a connection thread: {e}"
                ));
                if let Some(s) = self
                    .live
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id)
                {
                    s.shutdown();
                }
                false
            }
        }
    }

    /// Shut every connection down and wait for their threads.
    pub(crate) fn close_all(&self) {
        for s in self.live.lock().unwrap_or_else(|e| e.into_inner()).values() {
            s.shutdown();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// Accept connections on `listeners` until `stop` is triggered, handing each to
/// `on_accept` with the index of its listener.
pub(crate) fn accept_loop(
    listeners: &[&Listener],
    stop: &StopHandle,
    log: &Log,
    mut on_accept: impl FnMut(usize, Stream),
) -> io::Result<()> {
    for l in listeners {
        l.set_nonblocking(true)?;
    }
    while !stop.is_stopped() {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = listeners
                .iter()
                .map(|l| PollFd::new(*l, PollFlags::IN))
                .collect();
            fds.push(PollFd::new(&stop.inner.wake_r, PollFlags::IN));
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            fds.iter().map(|f| !f.revents().is_empty()).collect()
        };
        if stop.is_stopped() {
            break;
        }
        for (i, l) in listeners.iter().enumerate() {
            if !ready[i] {
                continue;
            }
            match l.accept() {
                Ok(s) => on_accept(i, s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: back off a little rather than spin.
                    log.warn(format_args!("accept on {}: {e}", l.describe()));
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    Ok(())
}

/// Outcome of waiting for the first bytes of a request.
pub(crate) enum First {
    /// `n` bytes were read (n >= 1).
    Got(usize),
    /// The peer closed the connection cleanly before sending anything.
    Closed,
}

/// Read at least one byte into `buf` with no timeout: a connection may legitimately
/// stay idle between requests for as long as its client likes.
pub(crate) fn read_first(stream: &mut Stream, buf: &mut [u8]) -> io::Result<First> {
    stream.set_read_timeout(None)?;
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(First::Closed),
            Ok(n) => return Ok(First::Got(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Fill `buf` completely before `deadline`. The rest of a request must follow its
/// first byte promptly: a stalled client only ties up its own connection thread,
/// and not even that for long.
pub(crate) fn read_exact_by(
    stream: &mut Stream,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request incomplete at deadline",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[off..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed mid-request",
                ))
            }
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request incomplete at deadline",
                ))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
