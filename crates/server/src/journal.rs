//! The verifier's journal on the store: one writer thread with its own runtime and
//! connection pool, committing whatever entries are waiting in one transaction (group
//! commit), retrying a failed commit with backoff for a while (a restarting PostgreSQL), and
//! only then answering each waiting caller. Writes are idempotent, so a commit retried after
//! a lost acknowledgement stores nothing twice.

use std::sync::mpsc;
use std::time::{Duration, Instant};
use verifier::{Journal, JournalEntry};

/// How long a commit is retried before the callers are told the store is unavailable.
pub const RETRY_FOR: Duration = Duration::from_secs(8);
/// Most entries committed in one transaction.
const BATCH: usize = 512;

struct Job {
    entry: JournalEntry,
    done: mpsc::SyncSender<Result<(), String>>,
}

pub struct StoreJournal {
    jobs: mpsc::Sender<Job>,
}

impl StoreJournal {
    /// Opens its own connection pool to `url` (already migrated) on a writer thread.
    pub fn start(url: &str) -> Result<Self, String> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        let url = url.to_string();
        std::thread::Builder::new()
            .name("verifier-journal".into())
            .spawn(move || writer(&url, &rx, &ready_tx))
            .map_err(|e| e.to_string())?;
        ready_rx
            .recv()
            .map_err(|_| "the journal writer stopped".to_string())??;
        Ok(Self { jobs })
    }
}

fn writer(url: &str, rx: &mpsc::Receiver<Job>, ready: &mpsc::SyncSender<Result<(), String>>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let store = match rt.block_on(store::Store::open(url)) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let entries: Vec<JournalEntry> = jobs.iter().map(|j| j.entry.clone()).collect();
        let deadline = Instant::now() + RETRY_FOR;
        let mut delay = Duration::from_millis(50);
        let result = loop {
            // Bounded by the deadline: a connection attempt to a database that is down
            // would otherwise wait for the pool's own, longer timeout.
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = rt.block_on(async {
                tokio::time::timeout(left, store.attestations().write(&entries)).await
            });
            let attempt = match attempt {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer from the database within {RETRY_FOR:?}")),
            };
            match attempt {
                Ok(()) => break Ok(()),
                Err(e) if Instant::now() + delay < deadline => {
                    eprintln!("verifier journal: {e}; retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(e) => break Err(e),
            }
        };
        for j in jobs {
            let _ = j.done.send(result.clone());
        }
    }
    rt.block_on(store.close());
}

impl Journal for StoreJournal {
    fn write(&self, entry: &JournalEntry) -> Result<(), String> {
        let (done, answer) = mpsc::sync_channel(1);
        self.jobs
            .send(Job {
                entry: entry.clone(),
                done,
            })
            .map_err(|_| "the journal writer stopped".to_string())?;
        answer
            .recv()
            .map_err(|_| "the journal writer stopped".to_string())?
    }
}
