//! Long-running operations, as ARM reports them (`status`, `percentComplete`, `error`) plus
//! what resuming needs: the plan and how many of its steps are done.

use crate::reimage::ReimagePlan;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationStatus {
    InProgress,
    Succeeded,
    Failed,
    Canceled,
}

impl OperationStatus {
    pub fn is_terminal(self) -> bool {
        self != Self::InProgress
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "InProgress",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::InProgress,
            Self::Succeeded,
            Self::Failed,
            Self::Canceled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationKind {
    CreateCluster,
    DeleteCluster,
    CreateAgentPool,
    UpdateAgentPool,
    DeleteAgentPool,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateCluster => "CreateCluster",
            Self::DeleteCluster => "DeleteCluster",
            Self::CreateAgentPool => "CreateAgentPool",
            Self::UpdateAgentPool => "UpdateAgentPool",
            Self::DeleteAgentPool => "DeleteAgentPool",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        use OperationKind::*;
        [
            CreateCluster,
            DeleteCluster,
            CreateAgentPool,
            UpdateAgentPool,
            DeleteAgentPool,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// `{"code","message"}` of a failed operation or request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// One long-running operation. Serialises as the operation-status document the server
/// returns (the plan itself is kept by the store, not shown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub id: String,
    pub kind: OperationKind,
    pub status: OperationStatus,
    /// ARM id of the resource the operation acts on.
    pub resource_id: String,
    pub steps_total: u32,
    pub steps_done: u32,
    pub percent_complete: f64,
    /// What the step in progress is doing (`"Reimage aks-np-…-vmss000001"`), empty when idle.
    pub current_step: String,
    pub start_time: String,
    pub end_time: Option<String>,
    pub error: Option<ErrorDetail>,
    #[serde(skip)]
    pub plan: ReimagePlan,
}

impl Operation {
    pub fn new(
        id: String,
        kind: OperationKind,
        resource_id: String,
        plan: ReimagePlan,
        now: String,
    ) -> Self {
        Self {
            id,
            kind,
            status: OperationStatus::InProgress,
            resource_id,
            steps_total: plan.len() as u32,
            steps_done: 0,
            percent_complete: 0.0,
            current_step: String::new(),
            start_time: now,
            end_time: None,
            error: None,
            plan,
        }
    }

    /// Records that step `done - 1` finished (idempotent: a repeated record changes nothing).
    pub fn advance(&mut self, done: u32) {
        self.steps_done = self.steps_done.max(done).min(self.steps_total);
        self.percent_complete = if self.steps_total == 0 {
            100.0
        } else {
            (f64::from(self.steps_done) * 100.0 / f64::from(self.steps_total) * 10.0).round() / 10.0
        };
    }

    pub fn finish(&mut self, error: Option<ErrorDetail>, now: String) {
        self.status = if error.is_some() {
            OperationStatus::Failed
        } else {
            self.advance(self.steps_total);
            OperationStatus::Succeeded
        };
        self.error = error;
        self.current_step.clear();
        self.end_time = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reimage::{MaxSurge, ReimagePlan};

    #[test]
    fn progress_is_monotonic_and_terminal_states_stick() {
        let plan = ReimagePlan::rolling_reimage(&["a".into(), "b".into()], MaxSurge::Count(1));
        let mut op = Operation::new(
            "op1".into(),
            OperationKind::UpdateAgentPool,
            "/x".into(),
            plan,
            "t0".into(),
        );
        assert_eq!(op.steps_total, 10);
        op.advance(3);
        op.advance(2);
        assert_eq!(op.steps_done, 3);
        assert_eq!(op.percent_complete, 30.0);
        op.finish(None, "t1".into());
        assert_eq!(op.status, OperationStatus::Succeeded);
        assert_eq!(op.percent_complete, 100.0);
        assert!(op.status.is_terminal());
        let v = serde_json::to_value(&op).unwrap();
        assert_eq!(v["status"], "Succeeded");
        assert_eq!(v["stepsDone"], 10);
        assert!(v.get("plan").is_none());
    }
}
