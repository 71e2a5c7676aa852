//! pynenc 0.4's status model: its 13 statuses, the transitions between them and the ownership
//! rules, as `pynenc.invocation.status` defines them. [`status_record_transition`] is the same
//! rule pynenc's orchestrators apply before they record a status; the store applies it too when
//! asked to enforce transitions (see [`super::Transitions`]).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One status of a pynenc invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PynencStatus {
    Registered,
    ConcurrencyControlled,
    ConcurrencyControlledFinal,
    Rerouted,
    Pending,
    PendingRecovery,
    Running,
    RunningRecovery,
    Paused,
    Killed,
    Success,
    Failed,
    Retry,
}

/// The rules pynenc attaches to a status (`StatusDefinition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusDefinition {
    pub allowed_transitions: &'static [PynencStatus],
    pub is_final: bool,
    pub available_for_run: bool,
    pub requires_ownership: bool,
    pub acquires_ownership: bool,
    pub releases_ownership: bool,
    pub overrides_ownership: bool,
}

const NONE: StatusDefinition = StatusDefinition {
    allowed_transitions: &[],
    is_final: false,
    available_for_run: false,
    requires_ownership: false,
    acquires_ownership: false,
    releases_ownership: false,
    overrides_ownership: false,
};

/// What a new invocation (no status yet) may move to.
pub const INITIAL_TRANSITIONS: &[PynencStatus] = &[PynencStatus::Registered];

impl PynencStatus {
    /// Every status, in pynenc's declaration order.
    pub const ALL: [PynencStatus; 13] = [
        PynencStatus::Registered,
        PynencStatus::ConcurrencyControlled,
        PynencStatus::ConcurrencyControlledFinal,
        PynencStatus::Rerouted,
        PynencStatus::Pending,
        PynencStatus::PendingRecovery,
        PynencStatus::Running,
        PynencStatus::RunningRecovery,
        PynencStatus::Paused,
        PynencStatus::Killed,
        PynencStatus::Success,
        PynencStatus::Failed,
        PynencStatus::Retry,
    ];

    /// The stored (and pynenc) value.
    pub fn as_str(self) -> &'static str {
        use PynencStatus::*;
        match self {
            Registered => "registered",
            ConcurrencyControlled => "concurrency_controlled",
            ConcurrencyControlledFinal => "concurrency_controlled_final",
            Rerouted => "rerouted",
            Pending => "pending",
            PendingRecovery => "pending_recovery",
            Running => "running",
            RunningRecovery => "running_recovery",
            Paused => "paused",
            Killed => "killed",
            Success => "success",
            Failed => "failed",
            Retry => "retry",
        }
    }

    /// pynenc's definition of this status.
    pub fn definition(self) -> StatusDefinition {
        use PynencStatus::*;
        match self {
            Registered => StatusDefinition {
                allowed_transitions: &[Pending, ConcurrencyControlled, ConcurrencyControlledFinal],
                available_for_run: true,
                releases_ownership: true,
                ..NONE
            },
            ConcurrencyControlled => StatusDefinition {
                allowed_transitions: &[Rerouted],
                releases_ownership: true,
                ..NONE
            },
            Rerouted => StatusDefinition {
                allowed_transitions: &[Pending, ConcurrencyControlled],
                available_for_run: true,
                releases_ownership: true,
                ..NONE
            },
            Pending => StatusDefinition {
                allowed_transitions: &[Running, Killed, Rerouted, PendingRecovery],
                requires_ownership: true,
                acquires_ownership: true,
                ..NONE
            },
            PendingRecovery => StatusDefinition {
                allowed_transitions: &[Rerouted],
                releases_ownership: true,
                overrides_ownership: true,
                ..NONE
            },
            Running => StatusDefinition {
                allowed_transitions: &[Paused, Killed, Retry, Success, Failed, RunningRecovery],
                requires_ownership: true,
                ..NONE
            },
            RunningRecovery => StatusDefinition {
                allowed_transitions: &[Rerouted],
                releases_ownership: true,
                overrides_ownership: true,
                ..NONE
            },
            Paused => StatusDefinition {
                allowed_transitions: &[Running, Killed],
                requires_ownership: true,
                ..NONE
            },
            Killed => StatusDefinition {
                allowed_transitions: &[Rerouted],
                releases_ownership: true,
                ..NONE
            },
            Retry => StatusDefinition {
                allowed_transitions: &[Pending],
                available_for_run: true,
                releases_ownership: true,
                ..NONE
            },
            Success | Failed | ConcurrencyControlledFinal => StatusDefinition {
                is_final: true,
                releases_ownership: true,
                ..NONE
            },
        }
    }

    /// Whether the status ends the invocation's lifecycle.
    pub fn is_final(self) -> bool {
        self.definition().is_final
    }

    /// Whether `from -> self` is allowed (`from` is `None` for an invocation with no status).
    pub fn can_follow(self, from: Option<PynencStatus>) -> bool {
        allowed_after(from).contains(&self)
    }
}

/// What may follow `from` (`None`: an invocation with no status yet).
pub fn allowed_after(from: Option<PynencStatus>) -> &'static [PynencStatus] {
    match from {
        None => INITIAL_TRANSITIONS,
        Some(status) => status.definition().allowed_transitions,
    }
}

impl fmt::Display for PynencStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PynencStatus {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<Self> {
        PynencStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = PynencStatus::ALL.iter().map(|s| s.as_str()).collect();
                crate::error::Error::config(format!(
                    "unknown pynenc invocation status {s:?}: expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// A status with its owner (pynenc's `InvocationStatusRecord`, without the timestamp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRecord {
    pub status: PynencStatus,
    /// The runner that owns the invocation, if any.
    pub runner_id: Option<String>,
}

/// Why a status change was refused: the data pynenc's own exceptions carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionRefusal {
    /// `InvocationStatusTransitionError`: `to` may not follow `from`.
    Transition {
        from: Option<PynencStatus>,
        to: PynencStatus,
        allowed: Vec<PynencStatus>,
    },
    /// `InvocationStatusOwnershipError`: the runner does not own the invocation.
    Ownership {
        from: PynencStatus,
        to: PynencStatus,
        current_owner: Option<String>,
        attempted_owner: Option<String>,
        reason: String,
    },
}

impl fmt::Display for TransitionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionRefusal::Transition { from, to, allowed } => {
                let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
                write!(
                    f,
                    "status {to} may not follow {}: allowed are [{}]",
                    from.map_or("no status", |s| s.as_str()),
                    names.join(", ")
                )
            }
            TransitionRefusal::Ownership {
                from, to, reason, ..
            } => write!(f, "status {from} -> {to} refused: {reason}"),
        }
    }
}

/// pynenc's `status_record_transition`: checks `current -> new_status` made by `runner_id`
/// (transition table, then ownership) and returns the new record with its owner.
pub fn status_record_transition(
    current: Option<&StatusRecord>,
    new_status: PynencStatus,
    runner_id: Option<&str>,
) -> Result<StatusRecord, TransitionRefusal> {
    let from = current.map(|r| r.status);
    if !new_status.can_follow(from) {
        return Err(TransitionRefusal::Transition {
            from,
            to: new_status,
            allowed: allowed_after(from).to_vec(),
        });
    }
    validate_ownership(current, new_status, runner_id)?;
    Ok(StatusRecord {
        status: new_status,
        runner_id: new_owner(current, new_status, runner_id),
    })
}

fn validate_ownership(
    current: Option<&StatusRecord>,
    new_status: PynencStatus,
    runner_id: Option<&str>,
) -> Result<(), TransitionRefusal> {
    let Some(current) = current else {
        return Ok(());
    };
    let new_def = new_status.definition();
    if new_def.overrides_ownership {
        return Ok(());
    }
    let refusal = |reason: String, attempted_owner: Option<&str>| TransitionRefusal::Ownership {
        from: current.status,
        to: new_status,
        current_owner: current.runner_id.clone(),
        attempted_owner: attempted_owner.map(str::to_string),
        reason,
    };
    if current.status.definition().requires_ownership && runner_id != current.runner_id.as_deref() {
        return Err(refusal(
            format!(
                "Status requires ownership by runner:'{}'",
                current.runner_id.as_deref().unwrap_or("None")
            ),
            runner_id,
        ));
    }
    if new_def.acquires_ownership && runner_id.is_none_or(str::is_empty) {
        return Err(refusal(
            format!("Status {new_status} requires a runner_id to acquire ownership"),
            None,
        ));
    }
    Ok(())
}

fn new_owner(
    current: Option<&StatusRecord>,
    new_status: PynencStatus,
    runner_id: Option<&str>,
) -> Option<String> {
    let def = new_status.definition();
    if def.releases_ownership {
        None
    } else if def.acquires_ownership {
        runner_id.map(str::to_string)
    } else {
        current.and_then(|r| r.runner_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::PynencStatus::*;
    use super::*;

    fn record(status: PynencStatus, owner: Option<&str>) -> StatusRecord {
        StatusRecord {
            status,
            runner_id: owner.map(str::to_string),
        }
    }

    #[test]
    fn the_lifecycle_of_a_run_is_allowed_and_moves_ownership() {
        let registered = status_record_transition(None, Registered, Some("r1")).unwrap();
        assert_eq!(registered, record(Registered, None));
        let pending = status_record_transition(Some(&registered), Pending, Some("r1")).unwrap();
        assert_eq!(pending, record(Pending, Some("r1")));
        let running = status_record_transition(Some(&pending), Running, Some("r1")).unwrap();
        assert_eq!(running, record(Running, Some("r1")));
        let done = status_record_transition(Some(&running), Success, Some("r1")).unwrap();
        assert_eq!(done, record(Success, None));
    }

    #[test]
    fn forbidden_transitions_name_what_is_allowed() {
        let err = status_record_transition(Some(&record(Registered, None)), Running, Some("r"))
            .unwrap_err();
        assert_eq!(
            err,
            TransitionRefusal::Transition {
                from: Some(Registered),
                to: Running,
                allowed: vec![Pending, ConcurrencyControlled, ConcurrencyControlledFinal],
            }
        );
        assert!(
            err.to_string()
                .contains("running may not follow registered")
        );
        for final_status in [Success, Failed, ConcurrencyControlledFinal] {
            assert!(final_status.is_final());
            for next in PynencStatus::ALL {
                assert!(
                    !next.can_follow(Some(final_status)),
                    "{final_status} -> {next}"
                );
            }
        }
        assert!(matches!(
            status_record_transition(None, Pending, Some("r")),
            Err(TransitionRefusal::Transition { from: None, .. })
        ));
    }

    #[test]
    fn only_the_owner_moves_an_owned_invocation_except_for_recovery() {
        let running = record(Running, Some("r1"));
        let err = status_record_transition(Some(&running), Success, Some("r2")).unwrap_err();
        match err {
            TransitionRefusal::Ownership {
                current_owner,
                attempted_owner,
                reason,
                ..
            } => {
                assert_eq!(current_owner.as_deref(), Some("r1"));
                assert_eq!(attempted_owner.as_deref(), Some("r2"));
                assert_eq!(reason, "Status requires ownership by runner:'r1'");
            }
            other => panic!("{other:?}"),
        }
        let recovered =
            status_record_transition(Some(&running), RunningRecovery, Some("r2")).unwrap();
        assert_eq!(recovered, record(RunningRecovery, None));
        let no_runner = status_record_transition(Some(&record(Rerouted, None)), Pending, None);
        assert!(matches!(
            no_runner,
            Err(TransitionRefusal::Ownership {
                attempted_owner: None,
                ..
            })
        ));
    }

    #[test]
    fn statuses_parse_from_their_values() {
        for status in PynencStatus::ALL {
            assert_eq!(status.as_str().parse::<PynencStatus>().unwrap(), status);
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        let err = "done".parse::<PynencStatus>().unwrap_err();
        assert!(
            err.to_string().contains("concurrency_controlled_final"),
            "{err}"
        );
    }
}
