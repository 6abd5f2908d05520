//! Kubernetes versions as `az aks` takes them: `MAJOR.MINOR.PATCH`, or `MAJOR.MINOR` for the
//! newest patch of that minor.

use crate::error::ControlError;
use std::fmt;

/// A parsed Kubernetes version. A missing patch means "the newest patch" and compares above
/// every explicit patch of the same minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubernetesVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: Option<u32>,
}

/// The oldest version Trusted Launch supports (the seed's first limitation).
pub const TRUSTED_LAUNCH_MINIMUM: KubernetesVersion = KubernetesVersion {
    major: 1,
    minor: 25,
    patch: Some(2),
};

/// The version a cluster gets when none is asked for.
pub const DEFAULT: &str = "1.30.6";

/// The patch a `MAJOR.MINOR` request resolves to (the newest this server knows).
const NEWEST_PATCH: &[(u32, u32, u32)] = &[
    (1, 24, 15),
    (1, 25, 16),
    (1, 26, 15),
    (1, 27, 16),
    (1, 28, 15),
    (1, 29, 10),
    (1, 30, 6),
    (1, 31, 2),
];

impl KubernetesVersion {
    pub fn parse(text: &str) -> Result<Self, ControlError> {
        let bad = || ControlError::InvalidKubernetesVersion(text.to_string());
        let t = text.strip_prefix('v').unwrap_or(text);
        let mut parts = t.split('.');
        let num = |p: Option<&str>| -> Result<u32, ControlError> {
            let p = p.ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 6 {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let major = num(parts.next())?;
        let minor = num(parts.next())?;
        let patch = match parts.next() {
            None => None,
            p => Some(num(p)?),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            major,
            minor,
            patch,
        })
    }

    /// The concrete `MAJOR.MINOR.PATCH` this request runs.
    pub fn resolved(self) -> Self {
        if self.patch.is_some() {
            return self;
        }
        let patch = NEWEST_PATCH
            .iter()
            .find(|(a, b, _)| *a == self.major && *b == self.minor)
            .map_or(0, |(_, _, p)| *p);
        Self {
            patch: Some(patch),
            ..self
        }
    }

    pub fn supports_trusted_launch(self) -> bool {
        self.resolved() >= TRUSTED_LAUNCH_MINIMUM
    }
}

impl fmt::Display for KubernetesVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.patch {
            Some(p) => write!(f, "{}.{}.{}", self.major, self.minor, p),
            None => write!(f, "{}.{}", self.major, self.minor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boundary_is_1_25_2() {
        let ok = |s: &str| {
            KubernetesVersion::parse(s)
                .unwrap()
                .supports_trusted_launch()
        };
        assert!(!ok("1.25.1"));
        assert!(ok("1.25.2"));
        assert!(ok("1.25"));
        assert!(!ok("1.24"));
        assert!(!ok("1.24.99"));
        assert!(ok("1.30.6"));
        assert!(ok("2.0.0"));
        assert!(ok("v1.26.0"));
    }

    #[test]
    fn malformed_versions_are_refused() {
        for s in [
            "", "1", "1.", "1.x.3", "1.2.3.4", "1..2", "-1.2.3", "1.25.2 ",
        ] {
            assert!(KubernetesVersion::parse(s).is_err(), "{s:?}");
        }
        assert_eq!(
            KubernetesVersion::parse("1.29")
                .unwrap()
                .resolved()
                .to_string(),
            "1.29.10"
        );
    }
}
