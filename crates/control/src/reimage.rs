//! Rolling plans: which node does what, in which order, so that at most `max surge` nodes are
//! out of service at once. A plan is a flat list of idempotent steps; an operation records how
//! many are done, so a restarted server resumes at the first step not recorded.

use crate::error::ControlError;
use serde::{Deserialize, Serialize};

/// `--max-surge`: a node count (`"3"`) or a percentage of the pool (`"33%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxSurge {
    Count(u32),
    Percent(u32),
}

impl MaxSurge {
    pub fn parse(text: &str) -> Result<Self, ControlError> {
        let bad = || ControlError::InvalidMaxSurge(text.to_string());
        let digits = |s: &str| -> Result<u32, ControlError> {
            if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let v = match text.strip_suffix('%') {
            Some(p) => {
                let n = digits(p)?;
                if n > 100 {
                    return Err(bad());
                }
                MaxSurge::Percent(n)
            }
            None => MaxSurge::Count(digits(text)?),
        };
        match v {
            MaxSurge::Count(0) | MaxSurge::Percent(0) => Err(bad()),
            v => Ok(v),
        }
    }

    /// How many nodes of a `pool_size`-node pool may be reimaged at once (at least one;
    /// percentages round up, as AKS does).
    pub fn batch_size(self, pool_size: usize) -> usize {
        let n = match self {
            MaxSurge::Count(c) => c as usize,
            MaxSurge::Percent(p) => (pool_size * p as usize).div_ceil(100),
        };
        n.clamp(1, pool_size.max(1))
    }
}

/// What one step does to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepAction {
    /// Create the node record and its VM (the backend boots it).
    Create,
    /// Mark unschedulable.
    Cordon,
    /// Evict its pods (respecting disruption budgets, once pods exist).
    Drain,
    /// Reimage and boot it again through the backend.
    Reimage,
    /// Record the attestation the backend reported after boot (or leave it `Pending`).
    Attest,
    /// Mark schedulable again.
    Uncordon,
    /// Delete the VM and the node record.
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReimageStep {
    pub node: String,
    pub action: StepAction,
    /// Which batch (0-based) the step belongs to.
    pub batch: u32,
}

/// The ordered steps of one operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReimagePlan {
    pub steps: Vec<ReimageStep>,
}

impl ReimagePlan {
    fn push_batches(&mut self, nodes: &[String], batch: usize, phases: &[StepAction]) {
        let first = self.steps.last().map_or(0, |s| s.batch + 1);
        for (i, chunk) in nodes.chunks(batch.max(1)).enumerate() {
            for &action in phases {
                for node in chunk {
                    self.steps.push(ReimageStep {
                        node: node.clone(),
                        action,
                        batch: first + i as u32,
                    });
                }
            }
        }
    }

    /// Rolling reimage of `nodes`: per batch of `surge.batch_size`, cordon → drain → reimage
    /// (boot) → attest → uncordon.
    pub fn rolling_reimage(nodes: &[String], surge: MaxSurge) -> Self {
        let mut plan = Self::default();
        use StepAction::*;
        plan.push_batches(
            nodes,
            surge.batch_size(nodes.len()),
            &[Cordon, Drain, Reimage, Attest, Uncordon],
        );
        plan
    }

    /// New nodes: create (boot) → attest, `surge` at a time.
    pub fn create(nodes: &[String], surge: MaxSurge) -> Self {
        let mut plan = Self::default();
        plan.push_batches(
            nodes,
            surge.batch_size(nodes.len()),
            &[StepAction::Create, StepAction::Attest],
        );
        plan
    }

    /// Nodes leaving: cordon → drain → delete.
    pub fn remove(nodes: &[String], surge: MaxSurge) -> Self {
        let mut plan = Self::default();
        use StepAction::*;
        plan.push_batches(
            nodes,
            surge.batch_size(nodes.len()),
            &[Cordon, Drain, Delete],
        );
        plan
    }

    pub fn then(mut self, other: ReimagePlan) -> Self {
        let offset = self.steps.last().map_or(0, |s| s.batch + 1);
        self.steps.extend(other.steps.into_iter().map(|mut s| {
            s.batch += offset;
            s
        }));
        self
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn max_surge_parses_counts_and_percentages() {
        assert_eq!(MaxSurge::parse("1").unwrap(), MaxSurge::Count(1));
        assert_eq!(MaxSurge::parse("33%").unwrap(), MaxSurge::Percent(33));
        for bad in ["0", "0%", "101%", "", "%", "-1", "1.5", "abc", "99999"] {
            assert!(MaxSurge::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn batch_sizes() {
        assert_eq!(MaxSurge::Count(1).batch_size(3), 1);
        assert_eq!(MaxSurge::Count(5).batch_size(3), 3);
        assert_eq!(MaxSurge::Percent(10).batch_size(100), 10);
        assert_eq!(MaxSurge::Percent(10).batch_size(3), 1);
        assert_eq!(MaxSurge::Percent(50).batch_size(3), 2);
        assert_eq!(MaxSurge::Percent(100).batch_size(0), 1);
    }

    #[test]
    fn rolling_never_has_more_than_surge_nodes_cordoned() {
        for (n, surge) in [
            (3, MaxSurge::Count(1)),
            (10, MaxSurge::Percent(30)),
            (7, MaxSurge::Count(3)),
        ] {
            let plan = ReimagePlan::rolling_reimage(&names(n), surge);
            assert_eq!(plan.len(), n * 5);
            let mut out = std::collections::BTreeSet::new();
            let mut reimaged = 0;
            for s in &plan.steps {
                match s.action {
                    StepAction::Cordon => {
                        out.insert(s.node.clone());
                    }
                    StepAction::Uncordon => {
                        assert!(out.remove(&s.node));
                    }
                    StepAction::Reimage => {
                        assert!(out.contains(&s.node), "reimage of a schedulable node");
                        reimaged += 1;
                    }
                    _ => {}
                }
                assert!(out.len() <= surge.batch_size(n));
            }
            assert!(out.is_empty());
            assert_eq!(reimaged, n);
        }
    }

    #[test]
    fn plans_chain_their_batches() {
        let plan = ReimagePlan::create(&names(2), MaxSurge::Count(1))
            .then(ReimagePlan::remove(&names(1), MaxSurge::Count(1)));
        let batches: Vec<u32> = plan.steps.iter().map(|s| s.batch).collect();
        assert_eq!(batches, [0, 0, 1, 1, 2, 2, 2]);
    }
}
