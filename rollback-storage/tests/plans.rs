//! The sample plans in examples/plans/storage-*.toml parse, validate, and name only
//! kinds this crate (or core) registers.

use rollback_core::{Plan, Registry};

#[test]
fn sample_plans_parse_and_use_registered_kinds() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/plans");
    let mut seen = 0;
    let registry = {
        let mut r = Registry::new();
        rollback_storage::register(&mut r);
        rollback_core::verify::register_builtin_verifiers(&mut r);
        r
    };
    let known = format!("{registry:?}");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("storage-") && name.ends_with(".toml")) {
            continue;
        }
        let plan =
            Plan::from_toml_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        for spec in plan.targets.iter().chain(&plan.verifiers).chain(&plan.snapshots) {
            spec.validate().unwrap();
            assert!(known.contains(&format!("\"{}\"", spec.kind)), "{name}: kind {} is not registered", spec.kind);
        }
        seen += 1;
    }
    assert!(seen >= 3, "expected the storage sample plans (bucket restore, cache flush, mirror)");
}
