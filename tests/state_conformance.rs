//! The state-store contract, run against every store (memory, SQLite, PostgreSQL), directly and
//! through the write-behind layer.

mod common;

use _core::Error;
use _core::state::{
    self, AppInfo, ExceptionRecord, Invocation, InvocationHistory, InvocationStatus, Rejected,
    StateStore, ValueKind, WorkflowIdentity, WriteBehind, WriteBehindConfig, WriteOp,
};
use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use common::{Database, Engine};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// Declares each listed `async fn case(engine: Engine)` as a test on memory, SQLite and PostgreSQL.
macro_rules! state_conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() { super::$case($crate::common::Engine::Memory).await }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() { super::$case($crate::common::Engine::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() { super::$case($crate::common::Engine::Postgres).await }
            )*
        }
    };
}

state_conformance!(
    upsert_then_get_round_trips_every_field,
    upsert_replaces_fields_and_keeps_result_and_history,
    unknown_invocations_are_not_found,
    history_is_returned_in_timestamp_order_and_moves_the_status,
    forbidden_transitions_are_rejected_and_change_nothing,
    a_batch_applies_valid_writes_and_rejects_invalid_ones,
    results_and_exceptions_round_trip,
    json_values_are_kept_verbatim,
    workflow_data_and_deterministic_values_are_separate,
    app_infos_are_stored_by_app_id,
    workflow_runs_and_types,
    workflow_sub_invocations_are_a_set_in_insertion_order,
    invocations_by_task_newest_first_with_limit_and_deletion,
    bad_input_is_a_config_error_before_anything_is_written,
    a_closed_store_fails_clearly,
    write_behind_reads_its_own_pending_writes,
    write_behind_wait_for_invocation_makes_its_writes_durable,
    write_behind_validates_transitions_at_call_time,
    write_behind_reports_a_failed_batch_on_the_next_call,
    write_behind_reports_writes_the_store_rejected,
    write_behind_many_concurrent_writers_read_their_own_writes,
    write_behind_history_is_never_shown_twice_while_batches_commit,
    write_behind_merges_pending_runs_into_task_queries,
    write_behind_closed_backend_fails_clearly,
    write_behind_set_reads_never_miss_a_write_being_committed,
);

struct Fixture {
    db: Database,
    store: Arc<dyn StateStore>,
}

impl Fixture {
    async fn new(engine: Engine) -> Option<Fixture> {
        let db = Database::fresh(engine).await?;
        let store = state::connect_store(&db.url).await.unwrap();
        Some(Fixture { db, store })
    }

    /// Another connection to the same database (the same store for memory://).
    async fn reopen(&self) -> Arc<dyn StateStore> {
        match self.db.engine {
            Engine::Memory => self.store.clone(),
            _ => state::connect_store(&self.db.url).await.unwrap(),
        }
    }

    async fn upsert(&self, inv: &Invocation) {
        self.store.upsert_invocation(inv.clone()).await.unwrap();
    }

    async fn history(&self, id: &str, status: Option<InvocationStatus>) -> Result<(), Error> {
        self.store
            .add_history(InvocationHistory::new(id, status, None, Utc::now()))
            .await
    }

    fn write_behind(&self) -> WriteBehind {
        WriteBehind::new(self.store.clone(), WriteBehindConfig::default())
    }
}

fn invocation(task: &str) -> Invocation {
    Invocation::new(task, r#"{"x": 1}"#, Utc::now())
}

fn at(seconds: i64) -> chrono::DateTime<Utc> {
    common::epoch() + Duration::seconds(seconds)
}

fn statuses(history: &[InvocationHistory]) -> Vec<Option<InvocationStatus>> {
    history.iter().map(|h| h.status).collect()
}

use InvocationStatus::{Failed, Pending, Registered, Retry, Running, Success};

async fn upsert_then_get_round_trips_every_field(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let inv = Invocation {
        invocation_id: "inv-1".into(),
        task_id: "mod.task".into(),
        arguments: r#"{"b": [1, 2.5, "ü"], "a": null}"#.into(),
        status: Registered,
        workflow: Some(WorkflowIdentity {
            workflow_id: "wf-1".into(),
            workflow_type: "mod.flow".into(),
            parent_workflow_id: Some("wf-0".into()),
        }),
        parent_invocation_id: Some("inv-0".into()),
        created_at: Utc.with_ymd_and_hms(2030, 5, 6, 7, 8, 9).unwrap()
            + Duration::microseconds(123_456),
    };
    f.upsert(&inv).await;
    assert_eq!(f.store.get_invocation("inv-1").await.unwrap(), inv);
    assert_eq!(f.reopen().await.get_invocation("inv-1").await.unwrap(), inv);
    let bare = invocation("t");
    f.upsert(&bare).await;
    let got = f.store.get_invocation(&bare.invocation_id).await.unwrap();
    assert_eq!(got, bare);
    assert!(got.workflow.is_none() && got.parent_invocation_id.is_none());
}

async fn upsert_replaces_fields_and_keeps_result_and_history(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let mut inv = invocation("t");
    f.upsert(&inv).await;
    f.history(&inv.invocation_id, Some(Pending)).await.unwrap();
    f.store
        .apply_one(WriteOp::SetResult {
            invocation_id: inv.invocation_id.clone(),
            value: "42".into(),
        })
        .await
        .unwrap();
    inv.arguments = r#"{"x": 2}"#.into();
    inv.status = Running; // pending -> running is allowed
    f.upsert(&inv).await;
    let got = f.store.get_invocation(&inv.invocation_id).await.unwrap();
    assert_eq!(
        (got.arguments.as_str(), got.status),
        (r#"{"x": 2}"#, Running)
    );
    assert_eq!(
        f.store
            .get_result(&inv.invocation_id)
            .await
            .unwrap()
            .as_deref(),
        Some("42")
    );
    assert_eq!(
        statuses(&f.store.get_history(&inv.invocation_id).await.unwrap()),
        vec![Some(Pending)]
    );
    // Same status again is not a transition.
    f.upsert(&inv).await;
}

async fn unknown_invocations_are_not_found(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let code = |e: Error| e.code();
    assert_eq!(
        code(f.store.get_invocation("nope").await.unwrap_err()),
        "invocation_not_found"
    );
    assert_eq!(
        code(f.store.get_history("nope").await.unwrap_err()),
        "invocation_not_found"
    );
    assert_eq!(
        code(f.store.get_result("nope").await.unwrap_err()),
        "invocation_not_found"
    );
    assert_eq!(
        code(f.store.get_exception("nope").await.unwrap_err()),
        "invocation_not_found"
    );
    assert_eq!(
        code(f.history("nope", Some(Pending)).await.unwrap_err()),
        "invocation_not_found"
    );
    let err = f
        .store
        .apply_one(WriteOp::SetResult {
            invocation_id: "nope".into(),
            value: "1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invocation_not_found");
    assert!(err.to_string().contains("nope"), "{err}");
    // An invocation without history has an empty history, not an error.
    let inv = invocation("t");
    f.upsert(&inv).await;
    assert!(
        f.store
            .get_history(&inv.invocation_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(f.store.get_result(&inv.invocation_id).await.unwrap(), None);
    assert_eq!(
        f.store.get_exception(&inv.invocation_id).await.unwrap(),
        None
    );
}

async fn history_is_returned_in_timestamp_order_and_moves_the_status(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let inv = invocation("t");
    f.upsert(&inv).await;
    let id = inv.invocation_id.clone();
    let plus2 = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
    let mut entries = vec![
        InvocationHistory::new(
            &id,
            Some(Pending),
            Some(r#"{"runner": "r1", "n": [1, 2]}"#.into()),
            Utc::now(),
        ),
        InvocationHistory::new(&id, Some(Running), None, Utc::now()),
        InvocationHistory::new(&id, None, Some("\"heartbeat\"".into()), Utc::now()),
        InvocationHistory::new(&id, Some(Success), None, Utc::now()),
    ];
    // Written in status order, stamped out of order: the read is by timestamp.
    entries[0].timestamp = at(30).with_timezone(&plus2);
    entries[1].timestamp = at(10).fixed_offset();
    entries[2].timestamp = (at(20) + Duration::microseconds(7)).fixed_offset();
    entries[3].timestamp = at(40).fixed_offset();
    for e in &entries {
        f.store.add_history(e.clone()).await.unwrap();
    }
    let got = f.reopen().await.get_history(&id).await.unwrap();
    assert_eq!(
        statuses(&got),
        vec![Some(Running), None, Some(Pending), Some(Success)]
    );
    let expected = [&entries[1], &entries[2], &entries[0], &entries[3]];
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g.to_json(), e.to_json());
        assert_eq!(g.timestamp.offset(), e.timestamp.offset());
        assert_eq!(g.entry_key, e.entry_key);
    }
    assert_eq!(
        got[2].execution_context.as_deref(),
        Some(r#"{"runner": "r1", "n": [1, 2]}"#)
    );
    assert_eq!(f.store.get_invocation(&id).await.unwrap().status, Success);
}

async fn forbidden_transitions_are_rejected_and_change_nothing(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let inv = invocation("t");
    let id = inv.invocation_id.clone();
    f.upsert(&inv).await;
    let err = f.history(&id, Some(Success)).await.unwrap_err();
    assert_eq!(err.code(), "invalid_status_transition");
    assert!(err.to_string().contains("registered to success"), "{err}");
    for s in [Pending, Running, Failed] {
        f.history(&id, Some(s)).await.unwrap();
    }
    for s in [Running, Retry, Pending, Success, Registered] {
        let err = f.history(&id, Some(s)).await.unwrap_err();
        assert_eq!(err.code(), "invalid_status_transition", "failed -> {s}");
    }
    // A status-less entry is always allowed.
    f.history(&id, None).await.unwrap();
    let mut back = inv.clone();
    back.status = Running;
    let err = f.store.upsert_invocation(back).await.unwrap_err();
    assert_eq!(err.code(), "invalid_status_transition");
    assert_eq!(f.store.get_invocation(&id).await.unwrap().status, Failed);
    assert_eq!(
        statuses(&f.store.get_history(&id).await.unwrap()),
        vec![Some(Pending), Some(Running), Some(Failed), None]
    );
}

async fn a_batch_applies_valid_writes_and_rejects_invalid_ones(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let a = invocation("t");
    let b = invocation("t");
    let ops = vec![
        WriteOp::UpsertInvocation(a.clone()),
        WriteOp::AddHistory(InvocationHistory::new(
            &a.invocation_id,
            Some(Pending),
            None,
            Utc::now(),
        )),
        WriteOp::AddHistory(InvocationHistory::new(
            &a.invocation_id,
            Some(Success),
            None,
            Utc::now(),
        )), // rejected
        WriteOp::AddHistory(InvocationHistory::new(
            &a.invocation_id,
            Some(Running),
            None,
            Utc::now(),
        )),
        WriteOp::SetResult {
            invocation_id: b.invocation_id.clone(),
            value: "1".into(),
        }, // rejected
        WriteOp::UpsertInvocation(b.clone()),
        WriteOp::SetResult {
            invocation_id: b.invocation_id.clone(),
            value: "[1]".into(),
        },
        WriteOp::SetResult {
            invocation_id: b.invocation_id.clone(),
            value: "{]".into(),
        }, // rejected
        WriteOp::SetWorkflowValue {
            workflow_id: "w".into(),
            kind: ValueKind::Data,
            key: "k".into(),
            value: "1".into(),
        },
        WriteOp::SetWorkflowValue {
            workflow_id: "w".into(),
            kind: ValueKind::Data,
            key: "k".into(),
            value: "2".into(),
        },
    ];
    let rejected: Vec<Rejected> = f.store.apply(ops).await.unwrap();
    let codes: Vec<(usize, &str)> = rejected.iter().map(|r| (r.index, r.error.code())).collect();
    assert_eq!(
        codes,
        vec![
            (2, "invalid_status_transition"),
            (4, "invocation_not_found"),
            (7, "config_error")
        ]
    );
    let store = f.reopen().await;
    assert_eq!(
        store.get_invocation(&a.invocation_id).await.unwrap().status,
        Running
    );
    assert_eq!(
        statuses(&store.get_history(&a.invocation_id).await.unwrap()),
        vec![Some(Pending), Some(Running)]
    );
    assert_eq!(
        store.get_result(&b.invocation_id).await.unwrap().as_deref(),
        Some("[1]")
    );
    assert_eq!(
        store
            .get_workflow_value("w", ValueKind::Data, "k")
            .await
            .unwrap()
            .as_deref(),
        Some("2")
    );
}

fn exception_record() -> ExceptionRecord {
    ExceptionRecord {
        type_module: "myapp.errors".into(),
        type_qualname: "Outer.BadThing".into(),
        args: Some(r#"["boom", 3]"#.into()),
        message: "('boom', 3)".into(),
        traceback: "Traceback (most recent call last):\n  File \"x.py\", line 1\nBadThing: boom\n"
            .into(),
    }
}

async fn results_and_exceptions_round_trip(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let inv = invocation("t");
    let id = inv.invocation_id.clone();
    f.upsert(&inv).await;
    for value in ["null", "1", r#"{"z": 1, "a": [true, null]}"#, "\"text\""] {
        f.store
            .apply_one(WriteOp::SetResult {
                invocation_id: id.clone(),
                value: value.into(),
            })
            .await
            .unwrap();
        assert_eq!(
            f.reopen().await.get_result(&id).await.unwrap().as_deref(),
            Some(value)
        );
    }
    let exc = exception_record();
    f.store
        .apply_one(WriteOp::SetException {
            invocation_id: id.clone(),
            exception: exc.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        f.reopen().await.get_exception(&id).await.unwrap(),
        Some(exc.clone())
    );
    assert_eq!(exc.type_name(), "myapp.errors.Outer.BadThing");
    let no_args = ExceptionRecord { args: None, ..exc };
    f.store
        .apply_one(WriteOp::SetException {
            invocation_id: id.clone(),
            exception: no_args.clone(),
        })
        .await
        .unwrap();
    assert_eq!(f.store.get_exception(&id).await.unwrap(), Some(no_args));
}

async fn json_values_are_kept_verbatim(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let mut inv = invocation("t");
    inv.arguments =
        r#"{"zeta": 1, "alpha": {"y": 2, "x": [3]}, "big": 123456789012345678901234567890}"#.into();
    f.upsert(&inv).await;
    let value = r#"{"b": 1.0, "a": "\u00e9\n", "c": 1e400}"#;
    // 1e400 is not representable as f64 but is valid JSON text: it must come back as written.
    f.store
        .apply_one(WriteOp::SetResult {
            invocation_id: inv.invocation_id.clone(),
            value: value.into(),
        })
        .await
        .unwrap();
    let store = f.reopen().await;
    assert_eq!(
        store
            .get_invocation(&inv.invocation_id)
            .await
            .unwrap()
            .arguments,
        inv.arguments
    );
    assert_eq!(
        store
            .get_result(&inv.invocation_id)
            .await
            .unwrap()
            .as_deref(),
        Some(value)
    );
}

async fn workflow_data_and_deterministic_values_are_separate(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let set = |kind, key: &str, value: &str| WriteOp::SetWorkflowValue {
        workflow_id: "wf".into(),
        kind,
        key: key.into(),
        value: value.into(),
    };
    f.store
        .apply_one(set(ValueKind::Data, "k", r#"{"a": 1}"#))
        .await
        .unwrap();
    f.store
        .apply_one(set(ValueKind::Deterministic, "k", "0.25"))
        .await
        .unwrap();
    f.store
        .apply_one(set(ValueKind::Data, "k", r#"{"a": 2}"#))
        .await
        .unwrap();
    let store = f.reopen().await;
    assert_eq!(
        store
            .get_workflow_value("wf", ValueKind::Data, "k")
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"a": 2}"#)
    );
    assert_eq!(
        store
            .get_workflow_value("wf", ValueKind::Deterministic, "k")
            .await
            .unwrap()
            .as_deref(),
        Some("0.25")
    );
    assert_eq!(
        store
            .get_workflow_value("wf", ValueKind::Data, "other")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_workflow_value("wf2", ValueKind::Data, "k")
            .await
            .unwrap(),
        None
    );
}

async fn app_infos_are_stored_by_app_id(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let a = AppInfo {
        app_id: "app-a".into(),
        module: Some("proj.app".into()),
        metadata: r#"{"v": 1}"#.into(),
    };
    let b = AppInfo::new("app-b");
    f.store
        .apply(vec![
            WriteOp::StoreAppInfo(b.clone()),
            WriteOp::StoreAppInfo(a.clone()),
        ])
        .await
        .unwrap();
    let a2 = AppInfo {
        metadata: r#"{"v": 2}"#.into(),
        ..a.clone()
    };
    f.store
        .apply_one(WriteOp::StoreAppInfo(a2.clone()))
        .await
        .unwrap();
    let store = f.reopen().await;
    assert_eq!(store.get_app_info("app-a").await.unwrap(), Some(a2.clone()));
    assert_eq!(store.get_app_info("nope").await.unwrap(), None);
    assert_eq!(store.get_all_app_infos().await.unwrap(), vec![a2, b]);
}

async fn workflow_runs_and_types(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let run = |id: &str, ty: &str| WorkflowIdentity::new(id, ty);
    let child = WorkflowIdentity {
        parent_workflow_id: Some("w1".into()),
        ..run("w3", "flow.b")
    };
    let ops = vec![
        WriteOp::StoreWorkflowRun(run("w1", "flow.b")),
        WriteOp::StoreWorkflowRun(run("w2", "flow.a")),
        WriteOp::StoreWorkflowRun(child.clone()),
        WriteOp::StoreWorkflowRun(run("w1", "flow.b")),
    ];
    f.store.apply(ops).await.unwrap();
    f.store
        .apply_one(WriteOp::StoreWorkflowRun(run("w2", "flow.a")))
        .await
        .unwrap();
    let store = f.reopen().await;
    assert_eq!(
        store.get_workflow_types().await.unwrap(),
        vec!["flow.a", "flow.b"]
    );
    assert_eq!(
        store.get_workflow_runs(None).await.unwrap(),
        vec![run("w1", "flow.b"), run("w2", "flow.a"), child.clone()]
    );
    assert_eq!(
        store.get_workflow_runs(Some("flow.b")).await.unwrap(),
        vec![run("w1", "flow.b"), child]
    );
    assert!(
        store
            .get_workflow_runs(Some("flow.z"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn workflow_sub_invocations_are_a_set_in_insertion_order(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let sub = |p: &str, s: &str| WriteOp::StoreSubInvocation {
        parent_workflow_id: p.into(),
        sub_invocation_id: s.into(),
    };
    f.store
        .apply(vec![
            sub("w", "i2"),
            sub("w", "i1"),
            sub("w", "i2"),
            sub("v", "i9"),
        ])
        .await
        .unwrap();
    f.store.apply_one(sub("w", "i1")).await.unwrap();
    f.store.apply_one(sub("w", "i3")).await.unwrap();
    let store = f.reopen().await;
    assert_eq!(
        store.get_workflow_sub_invocations("w").await.unwrap(),
        vec!["i2", "i1", "i3"]
    );
    assert_eq!(
        store.get_workflow_sub_invocations("v").await.unwrap(),
        vec!["i9"]
    );
    assert!(
        store
            .get_workflow_sub_invocations("none")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn invocations_by_task_newest_first_with_limit_and_deletion(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..6 {
        let mut inv = invocation("runs");
        // Two share a created_at: insertion order breaks the tie (later first).
        inv.created_at = at(if i == 4 { 3 } else { i });
        f.upsert(&inv).await;
        f.history(&inv.invocation_id, Some(Pending)).await.unwrap();
        ids.push(inv.invocation_id);
    }
    f.upsert(&invocation("other")).await;
    let newest: Vec<String> = f
        .store
        .get_invocations_by_task("runs", 4)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.invocation_id)
        .collect();
    assert_eq!(
        newest,
        vec![
            ids[5].clone(),
            ids[4].clone(),
            ids[3].clone(),
            ids[2].clone()
        ]
    );
    assert_eq!(
        f.store
            .get_invocations_by_task("runs", 100)
            .await
            .unwrap()
            .len(),
        6
    );
    assert!(
        f.store
            .get_invocations_by_task("none", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        f.store
            .get_invocations_by_task("runs", 0)
            .await
            .unwrap()
            .is_empty()
    );

    let old = vec![ids[0].clone(), ids[1].clone(), "unknown".to_string()];
    assert_eq!(f.store.delete_invocations(&old).await.unwrap(), 2);
    assert_eq!(
        f.store
            .get_invocations_by_task("runs", 100)
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        f.store.get_history(&ids[0]).await.unwrap_err().code(),
        "invocation_not_found"
    );
    assert_eq!(
        f.store.get_invocation(&ids[1]).await.unwrap_err().code(),
        "invocation_not_found"
    );
    // The id can be used again from scratch.
    let mut again = invocation("runs");
    again.invocation_id = ids[0].clone();
    f.upsert(&again).await;
    assert!(f.store.get_history(&ids[0]).await.unwrap().is_empty());
}

async fn bad_input_is_a_config_error_before_anything_is_written(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let mut inv = invocation("t");
    inv.arguments = "[1, 2]".into();
    let err = f.store.upsert_invocation(inv.clone()).await.unwrap_err();
    assert_eq!(err.code(), "config_error");
    assert!(err.to_string().contains("arguments"), "{err}");
    inv.arguments = "{}".into();
    inv.task_id = "".into();
    assert_eq!(
        f.store
            .upsert_invocation(inv.clone())
            .await
            .unwrap_err()
            .code(),
        "config_error"
    );
    assert_eq!(
        f.store
            .get_invocation(&inv.invocation_id)
            .await
            .unwrap_err()
            .code(),
        "invocation_not_found"
    );
    let bad_ctx = InvocationHistory::new("x", None, Some("{nope".into()), Utc::now());
    assert_eq!(
        f.store.add_history(bad_ctx).await.unwrap_err().code(),
        "config_error"
    );
    let bad_exc = ExceptionRecord {
        args: Some("{}".into()),
        ..exception_record()
    };
    let err = f
        .store
        .apply_one(WriteOp::SetException {
            invocation_id: "x".into(),
            exception: bad_exc,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "config_error");
    let bad_meta = AppInfo {
        metadata: "[]".into(),
        ..AppInfo::new("a")
    };
    assert_eq!(
        f.store
            .apply_one(WriteOp::StoreAppInfo(bad_meta))
            .await
            .unwrap_err()
            .code(),
        "config_error"
    );
    assert!(f.store.get_all_app_infos().await.unwrap().is_empty());
}

async fn a_closed_store_fails_clearly(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let inv = invocation("t");
    f.upsert(&inv).await;
    f.store.close().await;
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        f.store.get_invocation(&inv.invocation_id),
    )
    .await
    .expect("a closed store answers at once");
    let err = result.unwrap_err();
    assert_eq!(err.code(), "store_error");
    assert!(err.to_string().contains("closed"), "{err}");
    let err = f
        .store
        .upsert_invocation(invocation("t"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
}

// ----- write-behind ------------------------------------------------------------------------

/// A store whose batches wait until the gate opens (and that can be told to fail them).
#[derive(Debug)]
struct GatedStore {
    inner: Arc<dyn StateStore>,
    open: watch::Sender<bool>,
    fail: AtomicBool,
}

impl GatedStore {
    fn new(inner: Arc<dyn StateStore>) -> Arc<GatedStore> {
        Arc::new(GatedStore {
            inner,
            open: watch::channel(false).0,
            fail: AtomicBool::new(false),
        })
    }
    fn release(&self) {
        self.open.send_replace(true);
    }
}

#[async_trait]
impl StateStore for GatedStore {
    async fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<Rejected>, Error> {
        self.open.subscribe().wait_for(|open| *open).await.unwrap();
        if self.fail.load(Ordering::SeqCst) {
            return Err(Error::Store("disk on fire".into()));
        }
        self.inner.apply(ops).await
    }
    async fn get_invocation(&self, id: &str) -> Result<Invocation, Error> {
        self.inner.get_invocation(id).await
    }
    async fn get_history(&self, id: &str) -> Result<Vec<InvocationHistory>, Error> {
        self.inner.get_history(id).await
    }
    async fn get_result(&self, id: &str) -> Result<Option<String>, Error> {
        self.inner.get_result(id).await
    }
    async fn get_exception(&self, id: &str) -> Result<Option<ExceptionRecord>, Error> {
        self.inner.get_exception(id).await
    }
    async fn get_workflow_value(
        &self,
        w: &str,
        k: ValueKind,
        key: &str,
    ) -> Result<Option<String>, Error> {
        self.inner.get_workflow_value(w, k, key).await
    }
    async fn get_app_info(&self, app_id: &str) -> Result<Option<AppInfo>, Error> {
        self.inner.get_app_info(app_id).await
    }
    async fn get_all_app_infos(&self) -> Result<Vec<AppInfo>, Error> {
        self.inner.get_all_app_infos().await
    }
    async fn get_workflow_types(&self) -> Result<Vec<String>, Error> {
        self.inner.get_workflow_types().await
    }
    async fn get_workflow_runs(&self, ty: Option<&str>) -> Result<Vec<WorkflowIdentity>, Error> {
        self.inner.get_workflow_runs(ty).await
    }
    async fn get_workflow_sub_invocations(&self, w: &str) -> Result<Vec<String>, Error> {
        self.inner.get_workflow_sub_invocations(w).await
    }
    async fn get_invocations_by_task(
        &self,
        t: &str,
        limit: usize,
    ) -> Result<Vec<Invocation>, Error> {
        self.inner.get_invocations_by_task(t, limit).await
    }
    async fn delete_invocations(&self, ids: &[String]) -> Result<u64, Error> {
        self.inner.delete_invocations(ids).await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

async fn write_behind_reads_its_own_pending_writes(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let gate = GatedStore::new(f.store.clone());
    let wb = WriteBehind::new(gate.clone(), WriteBehindConfig::default());
    let mut inv = invocation("t");
    inv.workflow = Some(WorkflowIdentity::new("wf", "flow"));
    let id = inv.invocation_id.clone();
    wb.upsert_invocation(inv.clone()).await.unwrap();
    wb.add_history(&id, Some(Pending), Some("{\"w\": 1}".into()))
        .await
        .unwrap();
    wb.add_history(&id, Some(Running), None).await.unwrap();
    wb.set_result(&id, "[1, 2]".into()).await.unwrap();
    wb.set_exception(&id, exception_record()).await.unwrap();
    wb.set_workflow_value("wf", ValueKind::Data, "k", "\"v\"".into())
        .await
        .unwrap();
    wb.set_workflow_value("wf", ValueKind::Deterministic, "k", "7".into())
        .await
        .unwrap();
    wb.store_app_info(AppInfo::new("app")).await.unwrap();
    wb.store_workflow_run(WorkflowIdentity::new("wf", "flow"))
        .await
        .unwrap();
    wb.store_workflow_sub_invocation("wf", &id).await.unwrap();
    assert!(wb.pending() >= 10);

    // Nothing is durable yet, yet every read through the layer sees it.
    assert_eq!(
        f.store.get_invocation(&id).await.unwrap_err().code(),
        "invocation_not_found"
    );
    let got = wb.get_invocation(&id).await.unwrap();
    assert_eq!(
        (got.status, got.arguments.as_str()),
        (Running, inv.arguments.as_str())
    );
    assert_eq!(
        statuses(&wb.get_history(&id).await.unwrap()),
        vec![Some(Pending), Some(Running)]
    );
    assert_eq!(wb.get_result(&id).await.unwrap().as_deref(), Some("[1, 2]"));
    assert_eq!(
        wb.get_exception(&id).await.unwrap(),
        Some(exception_record())
    );
    assert_eq!(
        wb.get_workflow_value("wf", ValueKind::Data, "k")
            .await
            .unwrap()
            .as_deref(),
        Some("\"v\"")
    );
    assert_eq!(
        wb.get_workflow_value("wf", ValueKind::Deterministic, "k")
            .await
            .unwrap()
            .as_deref(),
        Some("7")
    );
    assert_eq!(wb.get_app_info().await.unwrap().app_id, "app");
    assert_eq!(wb.get_all_app_infos().await.unwrap().len(), 1);
    assert_eq!(wb.get_workflow_types().await.unwrap(), vec!["flow"]);
    assert_eq!(wb.get_workflow_runs(Some("flow")).await.unwrap().len(), 1);
    assert_eq!(
        wb.get_workflow_sub_invocations("wf").await.unwrap(),
        vec![id.clone()]
    );
    assert_eq!(
        wb.get_invocations_by_task("t", 10).await.unwrap()[0].invocation_id,
        id
    );

    // wait_for_all does not resolve while the batch cannot commit.
    let waited =
        tokio::time::timeout(std::time::Duration::from_millis(200), wb.wait_for_all()).await;
    assert!(
        waited.is_err(),
        "wait_for_all resolved before the writes were durable"
    );
    gate.release();
    wb.wait_for_all().await.unwrap();
    assert_eq!(wb.pending(), 0);
    let store = f.reopen().await;
    assert_eq!(store.get_invocation(&id).await.unwrap().status, Running);
    assert_eq!(
        statuses(&store.get_history(&id).await.unwrap()),
        vec![Some(Pending), Some(Running)]
    );
    assert_eq!(
        store.get_result(&id).await.unwrap().as_deref(),
        Some("[1, 2]")
    );
    assert_eq!(
        store.get_workflow_sub_invocations("wf").await.unwrap(),
        vec![id.clone()]
    );
    assert_eq!(
        store.get_app_info("app").await.unwrap(),
        Some(AppInfo::new("app"))
    );
    // Reads after durability give the same answers from the store.
    assert_eq!(
        statuses(&wb.get_history(&id).await.unwrap()),
        vec![Some(Pending), Some(Running)]
    );
    assert_eq!(wb.get_invocation(&id).await.unwrap().status, Running);
}

async fn write_behind_wait_for_invocation_makes_its_writes_durable(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let wb = f.write_behind();
    let other = f.reopen().await;
    for _ in 0..20 {
        let inv = invocation("t");
        let id = inv.invocation_id.clone();
        wb.upsert_invocation(inv).await.unwrap();
        wb.add_history(&id, Some(Pending), None).await.unwrap();
        wb.add_history(&id, Some(Running), None).await.unwrap();
        wb.add_history(&id, Some(Success), None).await.unwrap();
        wb.set_result(&id, "true".into()).await.unwrap();
        wb.wait_for_invocation(&id).await.unwrap();
        assert_eq!(other.get_invocation(&id).await.unwrap().status, Success);
        assert_eq!(other.get_history(&id).await.unwrap().len(), 3);
        assert_eq!(
            other.get_result(&id).await.unwrap().as_deref(),
            Some("true")
        );
    }
    // Nothing pending for an unknown id: resolves at once.
    wb.wait_for_invocation("unknown").await.unwrap();
}

async fn write_behind_validates_transitions_at_call_time(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let wb = f.write_behind();
    let inv = invocation("t");
    let id = inv.invocation_id.clone();
    wb.upsert_invocation(inv.clone()).await.unwrap();
    let err = wb.add_history(&id, Some(Success), None).await.unwrap_err();
    assert_eq!(err.code(), "invalid_status_transition");
    wb.add_history(&id, Some(Pending), None).await.unwrap();
    wb.wait_for_all().await.unwrap();
    // Known only to the store now: still validated before returning.
    let fresh = f.write_behind();
    let err = fresh
        .add_history(&id, Some(Success), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_status_transition");
    let err = fresh
        .add_history("unknown", Some(Pending), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invocation_not_found");
    let err = fresh.set_result("unknown", "1".into()).await.unwrap_err();
    assert_eq!(err.code(), "invocation_not_found");
    let err = fresh.set_result(&id, "not json".into()).await.unwrap_err();
    assert_eq!(err.code(), "config_error");
    fresh.add_history(&id, Some(Running), None).await.unwrap();
    let mut stale = inv.clone();
    stale.status = Registered;
    let err = fresh.upsert_invocation(stale).await.unwrap_err();
    assert_eq!(err.code(), "invalid_status_transition");
    fresh.wait_for_all().await.unwrap();
    assert_eq!(
        statuses(&f.store.get_history(&id).await.unwrap()),
        vec![Some(Pending), Some(Running)]
    );
}

async fn write_behind_reports_a_failed_batch_on_the_next_call(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let gate = GatedStore::new(f.store.clone());
    let wb = WriteBehind::new(gate.clone(), WriteBehindConfig::default());
    let inv = invocation("t");
    wb.upsert_invocation(inv.clone()).await.unwrap();
    gate.fail.store(true, Ordering::SeqCst);
    gate.release();
    let err = wb.wait_for_all().await.unwrap_err();
    assert_eq!(err.code(), "store_error");
    let text = err.to_string();
    assert!(
        text.contains("disk on fire")
            && text.contains(&inv.invocation_id)
            && text.contains("upsert_invocation"),
        "{text}"
    );
    // Reported once; the layer keeps working.
    gate.fail.store(false, Ordering::SeqCst);
    wb.upsert_invocation(inv.clone()).await.unwrap();
    wb.wait_for_all().await.unwrap();
    assert!(f.store.get_invocation(&inv.invocation_id).await.is_ok());

    // A failure is reported by the next call of any kind, not only by wait_for_*.
    gate.fail.store(true, Ordering::SeqCst);
    wb.set_result(&inv.invocation_id, "1".into()).await.unwrap();
    let mut reported = None;
    for _ in 0..200 {
        match wb.get_workflow_types().await {
            Err(e) => {
                reported = Some(e);
                break;
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
    let err = reported.expect("the failure was reported");
    assert!(err.to_string().contains("set_result"), "{err}");
    wb.wait_for_all().await.unwrap();
}

async fn write_behind_reports_writes_the_store_rejected(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let inv = invocation("t");
    let id = inv.invocation_id.clone();
    f.upsert(&inv).await;
    // Backend B validates against the stored status (registered) and queues "pending"…
    let gate = GatedStore::new(f.store.clone());
    let b = WriteBehind::new(gate.clone(), WriteBehindConfig::default());
    b.add_history(&id, Some(Pending), None).await.unwrap();
    // …while backend A moves the invocation to a final status first.
    let a = f.write_behind();
    for s in [Running, Failed] {
        a.add_history(&id, Some(s), None).await.unwrap();
    }
    a.wait_for_all().await.unwrap();
    gate.release();
    let err = b.wait_for_all().await.unwrap_err();
    assert_eq!(err.code(), "store_error");
    assert!(
        err.to_string().contains("add_history") && err.to_string().contains("failed to pending"),
        "{err}"
    );
    assert_eq!(f.store.get_invocation(&id).await.unwrap().status, Failed);
}

async fn write_behind_many_concurrent_writers_read_their_own_writes(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let wb = Arc::new(f.write_behind());
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let wb = wb.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..50 {
                let inv = Invocation::new(
                    "shared",
                    format!(r#"{{"worker": {worker}, "n": {n}}}"#),
                    Utc::now(),
                );
                let id = inv.invocation_id.clone();
                wb.upsert_invocation(inv).await.unwrap();
                wb.add_history(&id, Some(Pending), None).await.unwrap();
                wb.add_history(&id, Some(Running), None).await.unwrap();
                // Read-your-writes at every step, whatever the writer task is doing.
                assert_eq!(wb.get_invocation(&id).await.unwrap().status, Running);
                assert_eq!(wb.get_history(&id).await.unwrap().len(), 2);
                wb.add_history(&id, Some(Success), None).await.unwrap();
                wb.set_result(&id, format!("{n}")).await.unwrap();
                assert_eq!(wb.get_result(&id).await.unwrap(), Some(format!("{n}")));
                if n % 10 == 0 {
                    wb.wait_for_invocation(&id).await.unwrap();
                }
                ids.push((id, n));
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    wb.wait_for_all().await.unwrap();
    let store = f.reopen().await;
    for (id, n) in &all {
        assert_eq!(store.get_invocation(id).await.unwrap().status, Success);
        assert_eq!(
            statuses(&store.get_history(id).await.unwrap()),
            vec![Some(Pending), Some(Running), Some(Success)]
        );
        assert_eq!(store.get_result(id).await.unwrap(), Some(n.to_string()));
    }
    assert_eq!(
        store
            .get_invocations_by_task("shared", 1000)
            .await
            .unwrap()
            .len(),
        400
    );
}

async fn write_behind_history_is_never_shown_twice_while_batches_commit(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let config = WriteBehindConfig {
        max_batch: 3,
        ..Default::default()
    };
    let wb = Arc::new(WriteBehind::new(f.store.clone(), config));
    let inv = invocation("t");
    let id = inv.invocation_id.clone();
    wb.upsert_invocation(inv).await.unwrap();
    let reader = {
        let (wb, id) = (wb.clone(), id.clone());
        tokio::spawn(async move {
            let mut last = 0;
            for _ in 0..300 {
                let history = wb.get_history(&id).await.unwrap();
                let keys: HashSet<i64> = history.iter().map(|h| h.entry_key).collect();
                assert_eq!(keys.len(), history.len(), "an entry was shown twice");
                assert!(history.len() >= last, "an entry disappeared");
                last = history.len();
                tokio::task::yield_now().await;
            }
        })
    };
    for _ in 0..200 {
        wb.add_history(&id, None, None).await.unwrap();
        tokio::task::yield_now().await;
    }
    reader.await.unwrap();
    wb.wait_for_all().await.unwrap();
    assert_eq!(f.reopen().await.get_history(&id).await.unwrap().len(), 200);
}

async fn write_behind_merges_pending_runs_into_task_queries(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let mut stored = Vec::new();
    for i in 0..3 {
        let mut inv = invocation("runs");
        inv.created_at = at(i);
        f.upsert(&inv).await;
        stored.push(inv);
    }
    let gate = GatedStore::new(f.store.clone());
    let wb = WriteBehind::new(gate.clone(), WriteBehindConfig::default());
    let mut newer = invocation("runs");
    newer.created_at = at(10);
    wb.upsert_invocation(newer.clone()).await.unwrap();
    wb.add_history(&stored[0].invocation_id, Some(Pending), None)
        .await
        .unwrap();
    let runs = wb.get_invocations_by_task("runs", 10).await.unwrap();
    let ids: Vec<&str> = runs.iter().map(|i| i.invocation_id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            &newer.invocation_id,
            &stored[2].invocation_id,
            &stored[1].invocation_id,
            &stored[0].invocation_id
        ]
    );
    assert_eq!(
        runs[3].status, Pending,
        "pending status change shows in task queries"
    );
    assert_eq!(
        wb.get_invocations_by_task("runs", 2).await.unwrap().len(),
        2
    );
    gate.release();
    // Deleting waits for the pending writes of those ids, then deletes.
    let deleted = wb
        .delete_invocations(&[newer.invocation_id.clone(), stored[0].invocation_id.clone()])
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    let left: Vec<String> = wb
        .get_invocations_by_task("runs", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.invocation_id)
        .collect();
    assert_eq!(
        left,
        vec![
            stored[2].invocation_id.clone(),
            stored[1].invocation_id.clone()
        ]
    );
}

async fn write_behind_closed_backend_fails_clearly(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let wb = f.write_behind();
    let inv = invocation("t");
    let id = inv.invocation_id.clone();
    wb.upsert_invocation(inv).await.unwrap();
    wb.add_history(&id, Some(Pending), None).await.unwrap();
    wb.close().await.unwrap();
    assert!(wb.is_closed());
    let err = within(wb.get_invocation(&id)).await.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    let err = within(wb.wait_for_all()).await.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    let err = wb.upsert_invocation(invocation("t")).await.unwrap_err();
    assert_eq!(err.code(), "store_error");
    // close() flushed what was queued.
    if engine != Engine::Memory {
        let store = f.reopen().await;
        assert_eq!(store.get_invocation(&id).await.unwrap().status, Pending);
    }
}

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(5), fut)
        .await
        .expect("answered without hanging")
}

async fn write_behind_set_reads_never_miss_a_write_being_committed(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let wb = f.write_behind();
    for n in 0..150 {
        let wf = WorkflowIdentity::new(format!("w{n}"), format!("type{n}"));
        wb.store_workflow_run(wf.clone()).await.unwrap();
        wb.store_workflow_sub_invocation("parent", &format!("i{n}"))
            .await
            .unwrap();
        wb.store_app_info(AppInfo::new(format!("app{n}")))
            .await
            .unwrap();
        // Whether the batch is queued, committing or committed, each read sees the write.
        assert!(
            wb.get_workflow_runs(None).await.unwrap().contains(&wf),
            "run {n} missed"
        );
        assert!(
            wb.get_workflow_types()
                .await
                .unwrap()
                .contains(&wf.workflow_type),
            "type {n} missed"
        );
        assert_eq!(
            wb.get_workflow_sub_invocations("parent")
                .await
                .unwrap()
                .len(),
            n + 1
        );
        assert_eq!(wb.get_all_app_infos().await.unwrap().len(), n + 1);
        if n % 7 == 0 {
            tokio::task::yield_now().await;
        }
    }
}
