//! Node backends the server ships with until the embedded one (virtual firmware + vTPM host +
//! attestation) lands: `control::RecordsOnly`, optionally slowed to a fixed boot time so that
//! rolling reimages take observable time (demos, and the tests that kill the server mid-way).

use control::{BackendError, BootReport, NodeBackend, NodeSpec};
use std::time::Duration;

/// Wraps a backend and sleeps `boot` before each create or reimage returns.
pub struct BootDelay<B> {
    pub inner: B,
    pub boot: Duration,
}

impl<B: NodeBackend> NodeBackend for BootDelay<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn create(&self, node: &NodeSpec) -> Result<BootReport, BackendError> {
        std::thread::sleep(self.boot);
        self.inner.create(node)
    }
    fn reimage(&self, node: &NodeSpec) -> Result<BootReport, BackendError> {
        std::thread::sleep(self.boot);
        self.inner.reimage(node)
    }
    fn delete(&self, node: &str) -> Result<(), BackendError> {
        self.inner.delete(node)
    }
}
