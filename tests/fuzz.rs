//! Fuzz targets (proptest): database URLs and their redaction, cron schedules, policy
//! documents, the chunker, the entity encoder (run-id stamping + chunking) and caller-given
//! durations. Each target must never panic and must keep its invariant.
//!
//! By default each target runs a few hundred cases (seconds, for CI). A long round:
//! `HEADRACE_FUZZ_SECONDS=600 cargo test --release --test fuzz -- --test-threads=1 --nocapture`
//! runs each target for that many seconds and prints how many cases it tried.
//! Inputs that once failed are kept as plain tests at the end of this file.

use _core::db::DatabaseUrl;
use _core::db::url::redact;
use _core::runner::{Chunker, Schedule, parse_policies_yaml, stamp_run_id};
use _core::validate;
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

/// Runs `test` over `strategy` for `HEADRACE_FUZZ_SECONDS` (or `CI_CASES` cases); prints the count.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    const CI_CASES: u32 = 300;
    let budget = std::env::var("HEADRACE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let started = Instant::now();
    let mut cases: u64 = 0;
    loop {
        let mut runner = TestRunner::new(Config {
            cases: CI_CASES,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(failure) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} failed after {cases} cases: {failure}");
        }
        cases += u64::from(CI_CASES);
        match budget {
            Some(budget) if started.elapsed() < budget => continue,
            _ => break,
        }
    }
    println!(
        "fuzz {name}: {cases} cases in {:.0} s, no failure",
        started.elapsed().as_secs_f64()
    );
}

/// Text mixing URL syntax characters with arbitrary Unicode.
fn url_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(vec![
                ":", "/", "//", "@", "?", "#", "&", "=", "%", "[", "]", "%00", "\0", " ",
                "password=", "postgres://", "sqlite://", "host", "5432", "99999", "::1",
            ])
            .prop_map(str::to_string),
            2 => any::<char>().prop_map(|c| c.to_string()),
            1 => "[a-z0-9]{1,8}",
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

#[test]
fn fuzz_database_urls_never_panic() {
    fuzz("url_parse", url_text(), |raw| {
        let _ = DatabaseUrl::parse(&raw);
        let _ = redact(&raw);
        Ok(())
    });
}

#[test]
fn fuzz_passwords_never_show_in_errors_or_redacted_urls() {
    // A password holding URL syntax (#, /, ?, @, :) after a marker no other part contains.
    let password =
        ("[#/?@:%&= a-z]{0,12}", "[#/?@:a-z]{0,6}").prop_map(|(a, b)| format!("Zq9{a}Xk7{b}"));
    let port = prop_oneof![
        Just("5432".to_string()),
        Just("99999".into()),
        Just("x".into()),
        Just(String::new())
    ];
    let form = 0..3usize;
    fuzz(
        "url_redaction",
        (password, port, form),
        |(password, port, form)| {
            let port = if port.is_empty() {
                String::new()
            } else {
                format!(":{port}")
            };
            let raw = match form {
                0 => format!("postgres://user:{password}@db.example{port}/app"),
                1 => format!(
                    "postgres://user@db.example{port}/app?sslmode=require&password={password}"
                ),
                _ => {
                    format!("postgresql://user:{password}@db.example{port}/app?password={password}")
                }
            };
            let shown = redact(&raw);
            prop_assert!(!shown.contains("Zq9"), "{raw} was shown as {shown}");
            if let Err(err) = DatabaseUrl::parse(&raw) {
                prop_assert!(!err.to_string().contains("Zq9"), "{raw}: {err}");
            }
            if let Ok(url) = DatabaseUrl::parse(&raw) {
                prop_assert!(!format!("{url:?}").contains("Zq9"), "{raw}: {url:?}");
            }
            Ok(())
        },
    );
}

fn cron_text() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        4 => prop::sample::select(vec![
            "*", "*/5", "0", "1", "15", "23", "29", "30", "31", "2", "12", "0-6", "1-5", "MON",
            "JAN", "L", "W", "#", "?", "1,15", "*/0", "60", "-1", "99999999999", "7", "5L",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ];
    prop_oneof![
        8 => prop::collection::vec(field, 1..7).prop_map(|f| f.join(" ")),
        1 => prop::sample::select(vec!["@hourly", "@daily", "@yearly", "@reboot", "@", "@weekly "])
            .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

#[test]
fn fuzz_cron_schedules_parse_or_refuse_and_always_fire_when_accepted() {
    let now = Utc.with_ymd_and_hms(2030, 6, 15, 12, 0, 0).unwrap();
    fuzz("cron", cron_text(), move |text| {
        if let Ok(schedule) = Schedule::parse(Some(&text)) {
            let next = schedule.next_after(now);
            prop_assert!(
                matches!(schedule, Schedule::Once) || next.is_some_and(|n| n > now),
                "{text:?} accepted but next fire time is {next:?}"
            );
        }
        Ok(())
    });
}

fn yaml_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "a.b",
            "\"x\"",
            "null",
            "~",
            "1e400",
            "-1",
            "[]",
            "{}",
            "${HOME}",
            "${NOPE:-d}",
            "${",
            "*/5 * * * *",
            "0 0 31 2 *",
            "&a",
            "*a",
            "<<: *a",
            "!!binary AAAA",
            "'",
        ])
        .prop_map(str::to_string),
        "[a-z ${}:*&]{0,10}",
    ]
}

fn policy_yaml() -> impl Strategy<Value = String> {
    let policy = (
        "[a-z_]{0,6}",
        yaml_scalar(),
        yaml_scalar(),
        yaml_scalar(),
        prop::bool::ANY,
    )
        .prop_map(|(name, package, schedule, scope, with_config)| {
            if with_config {
                format!(
                    "  {name}:\n    config:\n      package: {package}\n      schedule: {schedule}\n    scope: {scope}\n"
                )
            } else {
                format!("  {name}: {package}\n")
            }
        });
    prop_oneof![
        6 => prop::collection::vec(policy, 0..4).prop_map(|p| format!("policies:\n{}", p.concat())),
        1 => any::<String>(),
        1 => prop::collection::vec(yaml_scalar(), 0..8).prop_map(|s| s.join("\n")),
    ]
}

#[test]
fn fuzz_policy_documents_parse_or_refuse_with_a_config_error() {
    let env = |name: &str| (name == "HOME").then(|| "/home/x".to_string());
    fuzz("policy", policy_yaml(), move |text| {
        match parse_policies_yaml(&text, &env) {
            Ok(specs) => {
                for spec in specs {
                    prop_assert!(spec.schedule().is_ok(), "{text:?}: accepted a bad schedule");
                }
            }
            Err(err) => prop_assert_eq!(err.code(), "config_error", "{}", err),
        }
        Ok(())
    });
}

/// Arbitrary JSON values, objects with a `metadata` key now and then.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![Just("metadata".to_string()), any::<String>()],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn fuzz_entity_encoder_stamps_and_chunks_every_entity_exactly() {
    let limit = 1024usize..4096;
    let entities = prop::collection::vec(json_value(), 0..40);
    fuzz("entity_encoder", (limit, entities), |(limit, entities)| {
        let base: Map<String, Value> = json!({"policy_name": "p"}).as_object().unwrap().clone();
        let mut chunker = Chunker::new(limit, base).unwrap();
        let mut chunks = Vec::new();
        let mut expected = Vec::new();
        for (position, mut entity) in entities.into_iter().enumerate() {
            let had_bad_metadata = entity
                .as_object()
                .and_then(|m| m.get("metadata"))
                .is_some_and(|m| !m.is_null() && !m.is_object());
            match stamp_run_id(&mut entity, "run-1", position as u64) {
                Ok(()) => prop_assert!(!had_bad_metadata),
                Err(err) => {
                    prop_assert!(had_bad_metadata, "{err}");
                    prop_assert_eq!(err.code(), "ingest_rejected");
                    continue;
                }
            }
            if let Value::Object(map) = &entity {
                prop_assert_eq!(&map["metadata"]["run_id"], &json!("run-1"));
            }
            let encoded = entity.to_string();
            match chunker.push(&encoded) {
                Ok(full) => {
                    chunks.extend(full);
                    expected.push(entity);
                }
                Err(err) => {
                    prop_assert_eq!(err.code(), "ingest_rejected");
                    prop_assert!(
                        encoded.len() + 40 > limit,
                        "{} bytes refused",
                        encoded.len()
                    );
                }
            }
        }
        chunks.extend(chunker.finish());
        let mut seen = Vec::new();
        for (index, chunk) in chunks.iter().enumerate() {
            prop_assert!(chunk.len() <= limit, "chunk of {} > {limit}", chunk.len());
            let parsed: Value = serde_json::from_str(&chunk.payload()).unwrap();
            prop_assert_eq!(&parsed["metadata"]["chunk_index"], &json!(index));
            seen.extend(parsed["entities"].as_array().unwrap().iter().cloned());
        }
        prop_assert_eq!(seen, expected);
        Ok(())
    });
}

#[test]
fn fuzz_caller_durations_never_overflow() {
    let seconds = prop_oneof![
        any::<f64>(),
        prop::sample::select(vec![
            0.0,
            -0.0,
            1e12,
            1e17,
            1e18,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE
        ]),
        0.0..validate::MAX_DURATION_SECONDS * 1.01,
    ];
    fuzz("seconds", seconds, |value| {
        if let Ok(duration) = validate::seconds("delay_seconds", value, true) {
            let now = Utc::now();
            let at = validate::after("run_at", now, duration);
            prop_assert!(at.is_ok(), "{value} s accepted but now + it is refused");
            let _ = validate::before(now, duration);
        }
        Ok(())
    });
}

// Inputs found by earlier rounds, kept as tests.

#[test]
fn a_hash_in_the_password_does_not_leak() {
    let raw = "postgres://user:Zq9#Xk7@db.example:5432/app";
    assert!(!redact(raw).contains("Zq9"), "{}", redact(raw));
    let raw = "postgres://user:Zq9#/Xk7@db.example:5432/app";
    assert!(!redact(raw).contains("Zq9"), "{}", redact(raw));
}

#[test]
fn floats_survive_a_json_round_trip_exactly() {
    // Found by fuzz_entity_encoder: without serde_json's float_roundtrip, parsing
    // 4.3091198268421916e-280 gave 4.309119826842192e-280.
    let value: Value = serde_json::from_str("4.3091198268421916e-280").unwrap();
    assert_eq!(value.as_f64().unwrap(), 4.3091198268421916e-280_f64);
    assert_eq!(value.to_string(), "4.3091198268421916e-280");
}
