//! The embedded node backend: each node is a disk (a copy of its pool's node image), a
//! vTPM of its own (state directory, EK certificates from the host's vTPM CA) and the
//! virtual firmware that boots the disk into that vTPM. After a boot, the node agent
//! (in process) enrolls the TPM with the registrar and attests to the verifier; the
//! verdict goes back to the control plane as the node's attestation.
//!
//! It implements [`control::NodeBackend`], the seam a QEMU/KVM backend implements too.

#![forbid(unsafe_code)]

pub mod tpm;

use attest::appraisal::boot_claims;
use attest::policy::ReferencePolicy;
use control::{AttestationStatus, BackendError, BootReport, NodeBackend, NodeSpec};
use eventlog::AlgorithmId;
use firmware::{BootCache, NodeImage, SoftwarePcrs};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use verifier::{Outcome, Verifier};
use vtpm::{Endorsement, ManufacturerCa};

pub use crate::tpm::{LocalTpm, NodeTpm};

/// What goes wrong realising a node.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(String),
    #[error("vTPM: {0}")]
    Tpm(String),
    #[error("node image: {0}")]
    Image(String),
    #[error("attestation: {0}")]
    Attestation(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The PCRs a node quotes: the firmware's, the boot chain's, Secure Boot's and shim's.
pub const QUOTED_PCRS: [u8; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14];

/// The node images built by `lab/build-node-image.sh` (IMAGES/NAME/{esp,vars.fd}).
#[derive(Debug, Clone)]
pub struct ImageCatalog {
    pub dir: PathBuf,
}

impl ImageCatalog {
    /// The image a node gets: GPU sizes carry the vendor's (unsigned) driver, except with
    /// Secure Boot, which the rules allow on a GPU pool only when driver installation is
    /// skipped (so the default image, without the driver).
    pub fn image_for(&self, spec: &NodeSpec) -> &'static str {
        match control::catalog::lookup(&spec.vm_size) {
            Some(size) if size.gpu && !spec.security_profile.enable_secure_boot => "gpu",
            _ => "default",
        }
    }

    /// The firmware variables: Microsoft's keys when Secure Boot is on, none when off.
    pub fn vars_for(&self, spec: &NodeSpec) -> PathBuf {
        let variant = if spec.security_profile.enable_secure_boot {
            "default"
        } else {
            "secure-boot-off"
        };
        self.dir.join(variant).join("vars.fd")
    }

    fn esp(&self, image: &str) -> PathBuf {
        self.dir.join(image).join("esp")
    }
}

/// The embedded backend.
pub struct EmbeddedBackend {
    nodes: PathBuf,
    images: ImageCatalog,
    ca: Arc<ManufacturerCa>,
    verifier: Arc<Verifier>,
    kernel_keys: Mutex<BootCache>,
    /// Pool policies already predicted, by image and variables.
    predicted: Mutex<BTreeMap<(String, PathBuf), ReferencePolicy>>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{what} {}: {e}", path.display()))
}

/// A node's disk from its image: the directory tree recreated, each file hard-linked to the
/// image's (a thousand nodes share one copy; a copy where the file system cannot link).
/// Nothing writes through these links: `tamper` replaces a file by renaming a new one over it.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| io("creating", to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io("reading", from, e))? {
        let entry = entry.map_err(|e| io("reading", from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry
            .file_type()
            .map_err(|e| io("reading", &src, e))?
            .is_dir()
        {
            copy_tree(&src, &dst)?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(|e| io("copying", &src, e))?;
        }
    }
    Ok(())
}

/// Replace `path` with `bytes` without touching the file it may share with the image.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tamper.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("replacing", path, e))
}

/// A file's content identity: device, inode, size and modification time. Node disks are
/// hard links of their image, so untouched files share it; `tamper` renames a new file into
/// place (a new inode), which changes it.
fn content_id(path: &Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h);
    Some(h.finish())
}

/// Read a disk into a node image (every file, paths relative to the disk).
pub fn read_disk(dir: &Path) -> Result<NodeImage> {
    let mut image = NodeImage::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| io("reading", &d, e))? {
            let entry = entry.map_err(|e| io("reading", &d, e))?;
            let path = entry.path();
            if entry
                .file_type()
                .map_err(|e| io("reading", &path, e))?
                .is_dir()
            {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                let bytes = std::fs::read(&path).map_err(|e| io("reading", &path, e))?;
                match content_id(&path) {
                    Some(id) => image.insert_identified(&rel, bytes, id),
                    None => image.insert(&rel, bytes),
                }
            }
        }
    }
    Ok(image)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn pool_key(spec: &NodeSpec) -> String {
    format!(
        "{}/{}/{}",
        spec.resource_group, spec.cluster_name, spec.pool_name
    )
}

impl EmbeddedBackend {
    /// Nodes live under `data_dir/nodes`; images come from `images`; EK certificates from
    /// the CA in `ca_dir`; verdicts from `verifier`.
    pub fn new(
        data_dir: &Path,
        images: ImageCatalog,
        ca_dir: &Path,
        verifier: Arc<Verifier>,
    ) -> Result<Self> {
        let ca = ManufacturerCa::load_or_create(ca_dir)
            .map_err(|e| Error::Tpm(format!("vTPM CA in {}: {e}", ca_dir.display())))?;
        for image in ["default", "gpu", "secure-boot-off"] {
            if !images.dir.join(image).join("esp").is_dir() {
                return Err(Error::Image(format!(
                    "{} has no {image} image (build them with lab/build-node-image.sh)",
                    images.dir.display()
                )));
            }
        }
        Ok(EmbeddedBackend {
            nodes: data_dir.join("nodes"),
            images,
            ca: Arc::new(ca),
            verifier,
            kernel_keys: Mutex::new(BootCache::default()),
            predicted: Mutex::new(BTreeMap::new()),
        })
    }

    /// The registrar and verifier the nodes attest to.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    fn node_dir(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(Error::Io(format!("invalid node name {name:?}")));
        }
        Ok(self.nodes.join(name))
    }

    /// A node's disk, which `tamper` changes as a bootkit would.
    pub fn disk(&self, name: &str) -> Result<PathBuf> {
        Ok(self.node_dir(name)?.join("disk"))
    }

    /// The pool's reference policy, predicted from its image (without booting it).
    fn policy_for(&self, spec: &NodeSpec) -> Result<ReferencePolicy> {
        let image = self.images.image_for(spec).to_string();
        let vars = self.images.vars_for(spec);
        let key = (image.clone(), vars.clone());
        if let Some(p) = self
            .predicted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let esp = read_disk(&self.images.esp(&image))?;
        let vars_bytes = std::fs::read(&vars).map_err(|e| io("reading", &vars, e))?;
        let mut soft =
            SoftwarePcrs::new(&[AlgorithmId::SHA1, AlgorithmId::SHA256, AlgorithmId::SHA384]);
        let report = {
            let mut keys = self.kernel_keys.lock().unwrap_or_else(|e| e.into_inner());
            firmware::boot_with(&esp, &vars_bytes, &mut soft, &mut keys)
                .map_err(|e| Error::Image(e.to_string()))?
        };
        let log = eventlog::EventLog::parse(&report.event_log)
            .map_err(|e| Error::Image(e.to_string()))?;
        let claims = boot_claims(&log).map_err(|f| Error::Image(f.reason))?;
        let pcrs: Vec<(String, u32, String)> = [7u32, 14]
            .iter()
            .filter_map(|&n| {
                soft.value(AlgorithmId::SHA256, n)
                    .map(|v| ("sha256".into(), n, hex::encode(v)))
            })
            .collect();
        let mut policy = ReferencePolicy::from_claims(&claims, &pcrs);
        policy.description = Some(format!("predicted from the node image {image}"));
        // A pool without Secure Boot requires nothing of it; with it, it must be on.
        policy.secure_boot = spec.security_profile.enable_secure_boot.then_some(true);
        self.predicted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, policy.clone());
        Ok(policy)
    }

    /// Boot the node's disk and, with a vTPM, enroll and attest.
    fn boot(&self, spec: &NodeSpec) -> Result<BootReport> {
        let dir = self.node_dir(&spec.name)?;
        let disk = read_disk(&dir.join("disk"))?;
        let vars_path = self.images.vars_for(spec);
        let vars = std::fs::read(&vars_path).map_err(|e| io("reading", &vars_path, e))?;
        if !spec.security_profile.enable_vtpm {
            // No TPM: the firmware measures into nothing a verifier can read.
            let mut soft = SoftwarePcrs::new(&[AlgorithmId::SHA256]);
            let mut keys = self.kernel_keys.lock().unwrap_or_else(|e| e.into_inner());
            let report = firmware::boot_with(&disk, &vars, &mut soft, &mut keys)
                .map_err(|e| Error::Image(e.to_string()))?;
            return Ok(BootReport {
                booted: report.booted(),
                failure: report.stopped.map(|s| s.to_string()),
                attestation: None,
                evidence: None,
            });
        }
        let mut tpm =
            NodeTpm::persistent(&dir.join("vtpm"), &Endorsement::CaEcc(Arc::clone(&self.ca)))?;
        let report = {
            let mut keys = self.kernel_keys.lock().unwrap_or_else(|e| e.into_inner());
            firmware::boot_with(&disk, &vars, &mut tpm, &mut keys)
                .map_err(|e| Error::Image(e.to_string()))?
        };
        if let Some(stop) = report.stopped {
            return Ok(BootReport {
                booted: false,
                failure: Some(stop.to_string()),
                attestation: None,
                evidence: None,
            });
        }
        let policy = self.policy_for(spec)?;
        self.verifier
            .set_policy(&pool_key(spec), policy)
            .map_err(|e| Error::Attestation(e.to_string()))?;
        let outcome = self.attest(spec, &mut tpm, &report.event_log)?;
        Ok(match outcome {
            Outcome::Healthy { token } => BootReport {
                booted: true,
                failure: None,
                attestation: Some(AttestationStatus::Healthy),
                evidence: Some(serde_json::Value::String(token)),
            },
            Outcome::Unhealthy { alert } => BootReport {
                booted: true,
                failure: None,
                attestation: Some(AttestationStatus::Unhealthy),
                evidence: Some(alert.node_record()),
            },
        })
    }

    /// The node agent: enroll (every boot re-binds the AK to the EK) and attest.
    fn attest(&self, spec: &NodeSpec, tpm: &mut NodeTpm, event_log: &[u8]) -> Result<Outcome> {
        let err = |e: agent::TpmError| Error::Tpm(e.to_string());
        let client = tpm.client();
        let id = client.identity().map_err(err)?;
        let verr = |e: verifier::VerifierError| Error::Attestation(e.to_string());
        let (id_object, secret) = self
            .verifier
            .begin_enrollment(
                &spec.name,
                &pool_key(spec),
                &id.ek_certificate,
                &id.ek.public,
                &id.ak.public,
                now(),
            )
            .map_err(verr)?;
        let answer = client
            .activate_credential(&id.ak, &id.ek, &id_object, &secret)
            .map_err(err)?;
        self.verifier
            .finish_enrollment(&spec.name, &answer, now())
            .map_err(verr)?;
        let nonce = self.verifier.nonce(&spec.name, now());
        let evidence = client
            .evidence(&id.ak, &nonce, ::tpm::hash::HashAlg::Sha256, &QUOTED_PCRS)
            .map_err(err)?;
        let mut pcrs = attest::PcrValues::new();
        for (bank, pcr, v) in evidence.pcrs {
            pcrs.insert(bank, pcr, v)
                .map_err(|e| Error::Attestation(e.to_string()))?;
        }
        for h in [id.ak.handle, id.ek.handle] {
            client.flush(h).map_err(err)?;
        }
        let quote = evidence.quote;
        self.verifier
            .attest(
                &spec.name,
                &quote.attest,
                &quote.signature,
                &pcrs,
                event_log,
                now(),
            )
            .map_err(verr)
    }

    /// Replace a component on the node's disk with a modified copy, as a bootkit would:
    /// `kernel`, `grub`, `shim` (one byte of the image's code flipped) or `module` (an
    /// unsigned module added).
    pub fn tamper(&self, node: &str, component: &str) -> Result<PathBuf> {
        let disk = self.disk(node)?;
        let path = match component {
            "kernel" => disk.join("vmlinuz"),
            "grub" => disk.join("EFI/BOOT/grubx64.efi"),
            "shim" => disk.join("EFI/BOOT/BOOTX64.EFI"),
            "module" => {
                let gpu = self.images.esp("gpu").join("modules/gpu-driver.ko");
                let to = disk.join("modules/rootkit.ko");
                std::fs::create_dir_all(disk.join("modules"))
                    .map_err(|e| io("creating", &disk, e))?;
                std::fs::copy(&gpu, &to).map_err(|e| io("copying", &gpu, e))?;
                return Ok(to);
            }
            other => {
                return Err(Error::Image(format!(
                    "no component {other:?} (kernel, grub, shim or module)"
                )))
            }
        };
        let mut bytes = std::fs::read(&path).map_err(|e| io("reading", &path, e))?;
        let pe = secureboot::pe::PeImage::parse(&bytes).map_err(|e| Error::Image(e.to_string()))?;
        let code = pe
            .sections()
            .first()
            .map(|s| s.pointer_to_raw_data as usize + s.size_of_raw_data as usize / 2)
            .ok_or_else(|| Error::Image(format!("{} has no sections", path.display())))?;
        if let Some(b) = bytes.get_mut(code) {
            *b ^= 0x01;
        }
        replace_file(&path, &bytes)?;
        Ok(path)
    }
}

fn failed(e: Error) -> BackendError {
    BackendError::Failed(e.to_string())
}

impl NodeBackend for EmbeddedBackend {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn create(&self, spec: &NodeSpec) -> std::result::Result<BootReport, BackendError> {
        let dir = self.node_dir(&spec.name).map_err(failed)?;
        if !dir.join("disk").is_dir() {
            copy_tree(
                &self.images.esp(self.images.image_for(spec)),
                &dir.join("disk"),
            )
            .map_err(failed)?;
        }
        self.boot(spec).map_err(failed)
    }

    fn reimage(&self, spec: &NodeSpec) -> std::result::Result<BootReport, BackendError> {
        let dir = self.node_dir(&spec.name).map_err(failed)?;
        let disk = dir.join("disk");
        let fresh = dir.join("disk.new");
        let _ = std::fs::remove_dir_all(&fresh);
        copy_tree(&self.images.esp(self.images.image_for(spec)), &fresh).map_err(failed)?;
        let _ = std::fs::remove_dir_all(&disk);
        std::fs::rename(&fresh, &disk).map_err(|e| failed(io("replacing", &disk, e)))?;
        // Disabling the vTPM drops it; enabling it again gives the node a new TPM.
        if !spec.security_profile.enable_vtpm {
            let _ = std::fs::remove_dir_all(dir.join("vtpm"));
            self.verifier
                .forget(&spec.name)
                .map_err(|e| failed(Error::Attestation(e.to_string())))?;
        }
        self.boot(spec).map_err(failed)
    }

    fn tamper(&self, node: &str, component: &str) -> std::result::Result<String, BackendError> {
        EmbeddedBackend::tamper(self, node, component)
            .map(|p| p.display().to_string())
            .map_err(failed)
    }

    fn delete(&self, node: &str) -> std::result::Result<(), BackendError> {
        let dir = self.node_dir(node).map_err(failed)?;
        self.verifier
            .forget(node)
            .map_err(|e| failed(Error::Attestation(e.to_string())))?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(failed(io("deleting", &dir, e))),
        }
    }
}
