//! Every kind of every crate is on the one contract: it has a config schema, and an
//! unknown key in its config is refused by `Registry::validate` — offline, before any
//! factory runs, so the error is the same whether its server is up or down — and by
//! building it, with the same message, before anything is contacted.

use rollback_core::{Plan, Registry, Selector, Spec, Step, StepOp};

const TYPO: &str = "zzz_not_a_field";

/// A plan with one component of `kind` (in `role`) whose config holds `config`.
fn plan_with(role: &str, kind: &str, config: serde_json::Value) -> Plan {
    let spec = Spec::new(kind, "it", config);
    let (step, mut plan) = match role {
        "target" => (StepOp::Rollback { target: "it".into(), to: Selector::Previous }, Plan::new("p")),
        "verifier" => (StepOp::Verify { verifier: "it".into(), policy: Default::default() }, Plan::new("p")),
        _ => (StepOp::Snapshot { snapshot: "it".into() }, Plan::new("p")),
    };
    match role {
        "target" => plan.targets.push(spec),
        "verifier" => plan.verifiers.push(spec),
        _ => plan.snapshots.push(spec),
    }
    plan.stage("s", 1, vec![Step::new("step", step)])
}

#[tokio::test]
async fn every_kind_has_a_schema_and_refuses_unknown_keys_offline() {
    let registry: Registry = rollback_cli::registry();
    let kinds = registry.kinds();
    assert!(kinds.len() >= 35, "every crate's kinds: {}", kinds.len());
    let mut listed = Vec::new();
    for info in &kinds {
        assert!(info.schema.is_some(), "{} {} is not on the Kind contract (no schema)", info.role, info.kind);
        assert!(!info.about.is_empty(), "{} {}: its config type has no doc line", info.role, info.kind);
        let plan = plan_with(info.role, &info.kind, serde_json::json!({ TYPO: 1 }));
        let err = registry.validate(&plan).expect_err(&info.kind).to_string();
        assert!(err.contains(&format!("unknown key `{TYPO}`")), "{} {}: {err}", info.role, info.kind);
        assert!(err.contains("config"), "{} {}: the path names the config: {err}", info.role, info.kind);
        // Building refuses it too, before any connection: no server is running for
        // most of these here, and the error is still the unknown key.
        let spec = Spec::new(&info.kind, "it", serde_json::json!({ TYPO: 1 }));
        let built = match info.role {
            "target" => registry.target("it", &[spec]).await.err(),
            "verifier" => registry.verifier("it", &[spec]).await.err(),
            _ => registry.snapshot("it", &[spec]).await.err(),
        };
        let built = built.expect("a config with an unknown key does not build").to_string();
        assert!(built.contains(&format!("unknown key `{TYPO}`")), "{} {} built: {built}", info.role, info.kind);
        listed.push(format!("{} {}", info.role, info.kind));
    }
    eprintln!("{} kinds on the contract:\n  {}", listed.len(), listed.join("\n  "));
}

#[test]
fn a_misspelled_prefix_never_restores_the_whole_bucket() {
    let registry = rollback_cli::registry();
    let plan = plan_with("target", "s3-restore", serde_json::json!({ "bucket": "assets", "prefx": "img/" }));
    let err = registry.validate(&plan).unwrap_err().to_string();
    assert!(err.contains("unknown key `prefx`; did you mean `prefix`?"), "{err}");
}

#[test]
fn unknown_kinds_get_the_closest_name() {
    let registry = rollback_cli::registry();
    let plan = plan_with("target", "docker-containr", serde_json::json!({}));
    let err = registry.validate(&plan).unwrap_err().to_string();
    assert!(err.contains("unknown target kind `docker-containr`; did you mean `docker-container`?"), "{err}");
}
