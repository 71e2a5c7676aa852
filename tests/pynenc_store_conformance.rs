//! The pynenc store (`src/state/pynenc/`) on memory, SQLite and PostgreSQL: one set of cases.

mod common;

use _core::state::pynenc::{
    Durability, HistoryEntry, PynencInvocation, PynencState, PynencStatus, PynencWrite,
    TransitionRefusal, Transitions, WorkflowRun, open_store,
};
use common::{Database, Engine};

fn entry(
    id: &str,
    at_us: i64,
    status: PynencStatus,
    runner: &str,
    owner: Option<&str>,
) -> HistoryEntry {
    HistoryEntry {
        invocation_id: id.into(),
        timestamp_us: at_us,
        utc_offset: Some(0),
        status,
        status_runner_id: owner.map(str::to_string),
        status_timestamp: "2030-01-01T00:00:00+00:00".into(),
        runner_context_id: runner.into(),
        registered_by_inv_id: None,
    }
}

fn invocation(id: &str, parent: Option<&str>, workflow: Option<&str>) -> PynencInvocation {
    PynencInvocation {
        invocation_id: id.into(),
        call_id_key: format!("mod.task#{id}"),
        task_id_key: "mod.task".into(),
        serialized_arguments: r#"{"a": "1"}"#.into(),
        parent_invocation_id: parent.map(str::to_string),
        parent_event_id: None,
        workflow: workflow.map(|w| WorkflowRun {
            workflow_id: w.into(),
            workflow_type_key: "mod.flow".into(),
            parent_workflow_id: None,
        }),
    }
}

async fn state(
    engine: Engine,
    durability: Durability,
    transitions: Transitions,
) -> Option<(Database, PynencState)> {
    let db = Database::fresh(engine).await?;
    let store = open_store(&db.url).await.unwrap();
    Some((
        db,
        PynencState::new(store, "app-1", durability, transitions),
    ))
}

async fn statuses(s: &PynencState, id: &str) -> Vec<PynencStatus> {
    let history = s.get_history(id).await.unwrap();
    history.iter().map(|e| e.status).collect()
}

async fn history_is_ordered_by_time_and_results_need_no_invocation(engine: Engine) {
    let Some((_db, s)) = state(engine, Durability::Durable, Transitions::Record).await else {
        return;
    };
    let writes = vec![
        PynencWrite::AddHistory(entry("i", 30, PynencStatus::Failed, "r", None)),
        PynencWrite::AddHistory(entry("i", 10, PynencStatus::Registered, "r", None)),
        PynencWrite::AddHistory(entry("i", 20, PynencStatus::Running, "r", Some("r"))),
        PynencWrite::SetResult {
            invocation_id: "never-upserted".into(),
            value: "42".into(),
        },
    ];
    assert!(s.write(writes).await.unwrap().is_empty());
    assert_eq!(
        statuses(&s, "i").await,
        [
            PynencStatus::Registered,
            PynencStatus::Running,
            PynencStatus::Failed
        ]
    );
    assert_eq!(
        s.get_result("never-upserted").await.unwrap().as_deref(),
        Some("42")
    );
    assert_eq!(s.get_exception("never-upserted").await.unwrap(), None);
    assert!(s.get_history("unknown").await.unwrap().is_empty());
    assert_eq!(s.history_in_range(15, 30, 10, 0).await.unwrap().len(), 2);
    assert_eq!(s.invocations_in_range(0, 100, 10, 0).await.unwrap(), ["i"]);
    s.close().await.unwrap();
}

async fn enforcing_refuses_only_the_forbidden_entry(engine: Engine) {
    let Some((_db, s)) = state(engine, Durability::Durable, Transitions::Enforce).await else {
        return;
    };
    let refused = s
        .write(vec![
            PynencWrite::AddHistory(entry("i", 1, PynencStatus::Registered, "r1", Some("r1"))),
            PynencWrite::AddHistory(entry("i", 2, PynencStatus::Running, "r1", Some("r1"))),
            PynencWrite::AddHistory(entry("i", 3, PynencStatus::Pending, "r1", Some("r1"))),
            PynencWrite::AddHistory(entry("i", 4, PynencStatus::Running, "r2", Some("r2"))),
            PynencWrite::AddHistory(entry("i", 5, PynencStatus::Running, "r1", Some("r1"))),
        ])
        .await
        .unwrap();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0].index, 1);
    assert!(matches!(
        refused[0].refusal,
        TransitionRefusal::Transition {
            to: PynencStatus::Running,
            ..
        }
    ));
    assert!(matches!(
        &refused[1].refusal,
        TransitionRefusal::Ownership { current_owner: Some(owner), .. } if owner == "r1"
    ));
    assert_eq!(
        statuses(&s, "i").await,
        [
            PynencStatus::Registered,
            PynencStatus::Pending,
            PynencStatus::Running
        ]
    );
    s.close().await.unwrap();
}

async fn lookups_and_purge_are_scoped_to_the_app(engine: Engine) {
    let Some((db, s)) = state(engine, Durability::Durable, Transitions::Record).await else {
        return;
    };
    let other = PynencState::new(
        s.store().clone(),
        "app-2",
        Durability::Durable,
        Transitions::Record,
    );
    s.write(vec![
        PynencWrite::UpsertInvocation(invocation("parent", None, Some("wf-1"))),
        PynencWrite::UpsertInvocation(invocation("child", Some("parent"), Some("wf-1"))),
        PynencWrite::StoreWorkflowRun(WorkflowRun {
            workflow_id: "wf-1".into(),
            workflow_type_key: "mod.flow".into(),
            parent_workflow_id: None,
        }),
        PynencWrite::StoreWorkflowRun(WorkflowRun {
            workflow_id: "wf-1".into(),
            workflow_type_key: "mod.flow".into(),
            parent_workflow_id: None,
        }),
        PynencWrite::StoreSubInvocation {
            parent_workflow_id: "wf-1".into(),
            sub_invocation_id: "child".into(),
        },
        PynencWrite::StoreRunnerContext {
            runner_id: "runner-alpha".into(),
            context_json: r#"{"runner_id": "runner-alpha"}"#.into(),
        },
        PynencWrite::StoreAppInfo {
            app_id: "app-1".into(),
            info_json: r#"{"app_id": "app-1"}"#.into(),
        },
    ])
    .await
    .unwrap();
    other
        .write(vec![PynencWrite::UpsertInvocation(invocation(
            "parent", None, None,
        ))])
        .await
        .unwrap();
    assert_eq!(s.child_invocations("parent").await.unwrap(), ["child"]);
    assert_eq!(
        s.invocations_by_workflow(Some("wf-1"), None).await.unwrap(),
        ["child", "parent"]
    );
    assert_eq!(
        other
            .invocations_by_workflow(None, Some("mod.flow"))
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(s.workflow_runs(None).await.unwrap().len(), 1);
    assert_eq!(s.workflow_types().await.unwrap(), ["mod.flow"]);
    assert_eq!(s.sub_invocations("wf-1").await.unwrap(), ["child"]);
    assert_eq!(s.matching_runner_contexts("alp").await.unwrap().len(), 1);
    assert!(
        other
            .matching_runner_contexts("alp")
            .await
            .unwrap()
            .is_empty()
    );
    let stored = s.get_invocation("child").await.unwrap().unwrap();
    assert_eq!(stored, invocation("child", Some("parent"), Some("wf-1")));
    s.purge().await.unwrap();
    assert_eq!(s.get_invocation("child").await.unwrap(), None);
    assert_eq!(s.get_app_info("app-1").await.unwrap(), None);
    assert!(other.get_invocation("parent").await.unwrap().is_some());
    other.close().await.unwrap();
    drop(db);
}

async fn write_behind_reads_its_writes_and_reports_failures_once(engine: Engine) {
    let Some((db, s)) = state(
        engine,
        Durability::WriteBehind { max_batch: 64 },
        Transitions::Enforce,
    )
    .await
    else {
        return;
    };
    for n in 0..300 {
        let id = format!("i{n}");
        s.write(vec![
            PynencWrite::AddHistory(entry(&id, n, PynencStatus::Registered, "r", None)),
            PynencWrite::SetResult {
                invocation_id: id,
                value: n.to_string(),
            },
        ])
        .await
        .unwrap();
    }
    assert_eq!(s.get_result("i299").await.unwrap().as_deref(), Some("299"));
    s.write(vec![PynencWrite::AddHistory(entry(
        "i0",
        999,
        PynencStatus::Success,
        "r",
        None,
    ))])
    .await
    .unwrap();
    let err = s.flush().await.unwrap_err();
    assert_eq!(err.code(), "invalid_status_transition", "{err}");
    s.flush().await.unwrap();
    if engine != Engine::Memory {
        let reader = PynencState::new(
            open_store(&db.url).await.unwrap(),
            "app-1",
            Durability::Durable,
            Transitions::Record,
        );
        assert_eq!(
            reader
                .history_in_range(0, 10_000, 1000, 0)
                .await
                .unwrap()
                .len(),
            300
        );
        reader.close().await.unwrap();
    }
    s.close().await.unwrap();
    assert!(
        s.get_result("i1")
            .await
            .unwrap_err()
            .to_string()
            .contains("closed")
    );
}

async fn bad_writes_fail_before_anything_is_written(engine: Engine) {
    let Some((_db, s)) = state(engine, Durability::Durable, Transitions::Record).await else {
        return;
    };
    let mut bad = invocation("x", None, None);
    bad.serialized_arguments = "[1]".into();
    let err = s
        .write(vec![
            PynencWrite::SetResult {
                invocation_id: "ok".into(),
                value: "1".into(),
            },
            PynencWrite::UpsertInvocation(bad),
        ])
        .await
        .unwrap_err();
    assert_eq!(err.code(), "config_error");
    assert_eq!(s.get_result("ok").await.unwrap(), None);
    s.close().await.unwrap();
}

/// A batch gives the rows its writes give one by one (stores may group a batch by kind).
async fn a_batch_applies_like_its_writes_in_order(engine: Engine) {
    let Some((_db, s)) = state(engine, Durability::Durable, Transitions::Record).await else {
        return;
    };
    let run = |id: &str, ty: &str| {
        PynencWrite::StoreWorkflowRun(WorkflowRun {
            workflow_id: id.into(),
            workflow_type_key: ty.into(),
            parent_workflow_id: None,
        })
    };
    let result = |v: &str| PynencWrite::SetResult {
        invocation_id: "a".into(),
        value: v.into(),
    };
    let exception = |v: &str| PynencWrite::SetException {
        invocation_id: "a".into(),
        value: v.into(),
    };
    let data = |v: &str| PynencWrite::SetWorkflowData {
        workflow_id: "wf".into(),
        key: "k".into(),
        value: v.into(),
    };
    let sub = |id: &str| PynencWrite::StoreSubInvocation {
        parent_workflow_id: "wf-1".into(),
        sub_invocation_id: id.into(),
    };
    let context = |v: &str| PynencWrite::StoreRunnerContext {
        runner_id: "r1".into(),
        context_json: format!(r#"{{"v": {v}}}"#),
    };
    let info = |v: &str| PynencWrite::StoreAppInfo {
        app_id: "app-1".into(),
        info_json: format!(r#"{{"v": {v}}}"#),
    };
    s.write(vec![
        PynencWrite::UpsertInvocation(invocation("a", None, None)),
        result("1"),
        PynencWrite::AddHistory(entry("a", 5, PynencStatus::Registered, "r", None)),
        exception("e"),
        data("1"),
        run("wf-2", "mod.a"),
        sub("x"),
        context("1"),
        info("1"),
        PynencWrite::AddHistory(entry("a", 5, PynencStatus::Pending, "r", None)),
        PynencWrite::UpsertInvocation(invocation("a", Some("p"), None)),
        result("2"),
        data("2"),
        run("wf-1", "mod.b"),
        run("wf-2", "mod.c"),
        sub("y"),
        sub("x"),
        context("2"),
        info("2"),
        PynencWrite::AddHistory(entry("a", 5, PynencStatus::Running, "r", None)),
    ])
    .await
    .unwrap();
    let stored = s.get_invocation("a").await.unwrap().unwrap();
    assert_eq!(stored.parent_invocation_id.as_deref(), Some("p"));
    assert_eq!(s.get_result("a").await.unwrap().as_deref(), Some("2"));
    assert_eq!(s.get_exception("a").await.unwrap().as_deref(), Some("e"));
    assert_eq!(
        s.get_workflow_data("wf", "k").await.unwrap().as_deref(),
        Some("2")
    );
    let runs: Vec<_> = s.workflow_runs(None).await.unwrap();
    let runs: Vec<_> = runs
        .iter()
        .map(|r| (r.workflow_id.as_str(), r.workflow_type_key.as_str()))
        .collect();
    assert_eq!(runs, [("wf-2", "mod.a"), ("wf-1", "mod.b")]);
    assert_eq!(s.sub_invocations("wf-1").await.unwrap(), ["x", "y"]);
    assert_eq!(
        s.runner_contexts(&["r1".into()]).await.unwrap(),
        [r#"{"v": 2}"#]
    );
    assert_eq!(
        s.get_app_info("app-1").await.unwrap().as_deref(),
        Some(r#"{"v": 2}"#)
    );
    assert_eq!(
        statuses(&s, "a").await,
        [
            PynencStatus::Registered,
            PynencStatus::Pending,
            PynencStatus::Running
        ]
    );
    s.close().await.unwrap();
}

/// Enforcing checks each entry against the latest record by time, including the entries
/// accepted before it in the same batch.
async fn enforcing_follows_entry_time_within_a_batch(engine: Engine) {
    let Some((_db, s)) = state(engine, Durability::Durable, Transitions::Enforce).await else {
        return;
    };
    let at = |t, status| PynencWrite::AddHistory(entry("e", t, status, "r1", Some("r1")));
    let refused = s
        .write(vec![
            at(10, PynencStatus::Registered),
            // Older than the registration: accepted, but the latest record stays `registered`.
            at(5, PynencStatus::Pending),
            at(11, PynencStatus::Running),
            PynencWrite::SetResult {
                invocation_id: "e".into(),
                value: "1".into(),
            },
        ])
        .await
        .unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].index, 2);
    assert!(matches!(
        refused[0].refusal,
        TransitionRefusal::Transition {
            from: Some(PynencStatus::Registered),
            to: PynencStatus::Running,
            ..
        }
    ));
    assert_eq!(s.get_result("e").await.unwrap().as_deref(), Some("1"));
    let refused = s
        .write(vec![
            at(12, PynencStatus::Pending),
            at(13, PynencStatus::Running),
        ])
        .await
        .unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(s.get_history("e").await.unwrap().len(), 4);
    s.close().await.unwrap();
}

/// Durable writers at the same time on one handle (on PostgreSQL one of them at a time takes
/// the store's write connection, the others pool connections): every write lands, in order
/// per writer, and the handle keeps working afterwards.
async fn concurrent_durable_writers_all_land(engine: Engine) {
    let Some((_db, s)) = state(engine, Durability::Durable, Transitions::Record).await else {
        return;
    };
    let s = std::sync::Arc::new(s);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for n in 0..10 {
                    let id = format!("w{w}-{n}");
                    s.write(vec![PynencWrite::UpsertInvocation(invocation(
                        &id, None, None,
                    ))])
                    .await
                    .unwrap();
                    for (at, status) in [
                        (1, PynencStatus::Registered),
                        (2, PynencStatus::Pending),
                        (3, PynencStatus::Running),
                    ] {
                        let h = entry(&id, at, status, "r", Some("r"));
                        s.write(vec![PynencWrite::AddHistory(h)]).await.unwrap();
                    }
                    s.write(vec![PynencWrite::SetResult {
                        invocation_id: id.clone(),
                        value: format!("{w}:{n}"),
                    }])
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    for w in 0..8 {
        for n in 0..10 {
            let id = format!("w{w}-{n}");
            assert!(s.get_invocation(&id).await.unwrap().is_some(), "{id}");
            assert_eq!(
                statuses(&s, &id).await,
                [
                    PynencStatus::Registered,
                    PynencStatus::Pending,
                    PynencStatus::Running
                ],
                "{id}"
            );
            let expected = format!("{w}:{n}");
            assert_eq!(
                s.get_result(&id).await.unwrap().as_deref(),
                Some(expected.as_str())
            );
        }
    }
    assert_eq!(
        s.invocations_in_range(0, 10, 1000, 0).await.unwrap().len(),
        80
    );
    s.close().await.unwrap();
    let after = s.write(vec![PynencWrite::SetResult {
        invocation_id: "late".into(),
        value: "1".into(),
    }]);
    assert!(after.await.is_err(), "a closed store refuses writes");
}

macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                use super::Engine;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() { super::$case(Engine::Memory).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() { super::$case(Engine::Sqlite).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() { super::$case(Engine::Postgres).await }
            }
        )*
    };
}

on_every_store!(
    history_is_ordered_by_time_and_results_need_no_invocation,
    enforcing_refuses_only_the_forbidden_entry,
    lookups_and_purge_are_scoped_to_the_app,
    write_behind_reads_its_writes_and_reports_failures_once,
    bad_writes_fail_before_anything_is_written,
    a_batch_applies_like_its_writes_in_order,
    enforcing_follows_entry_time_within_a_batch,
    concurrent_durable_writers_all_land,
);
