//! The plan loader against the bad-input corpus (`tests/plans/bad/`, expectations in
//! its `expect.txt`) and the generated inputs no file should hold: a 20 MB string,
//! 100,000 levels of nesting, invalid UTF-8, an injected `${VAR}` value. Every case
//! must get a clear, located, bounded error, without a panic and without creating
//! anything. The plan runner's test drives the same corpus through the binary.

use std::path::{Path, PathBuf};

use rollback_core::Registry;
use rollback_core::load::{Format, PlanLoader};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans/bad")
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    rollback_core::local::register_local_kinds(&mut registry);
    rollback_core::verify::register_builtin_verifiers(&mut registry);
    registry
}

/// `(file, expected substring)` pairs from `expect.txt`.
fn expectations() -> Vec<(String, String)> {
    std::fs::read_to_string(corpus().join("expect.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (file, expect) = l.split_once(": ").unwrap();
            (file.to_string(), expect.to_string())
        })
        .collect()
}

#[test]
fn every_corpus_file_gets_its_located_error() {
    let registry = registry();
    let loader = PlanLoader::new().registry(&registry).env(|_| None);
    let expectations = expectations();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "expect.txt")
        .collect();
    files.sort();
    let mut misses = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let wanted: Vec<&String> = expectations.iter().filter(|(f, _)| *f == name).map(|(_, e)| e).collect();
        assert!(!wanted.is_empty(), "{name} has no line in expect.txt");
        // Relative to the corpus, so the expected text does not depend on where the repository is.
        let err = loader.check_file(&path).expect_err(&name);
        let shown = err.to_string().replace(&format!("{}/", corpus().display()), "");
        for expect in wanted {
            if !shown.contains(expect.as_str()) {
                misses.push(format!("{name}: expected {expect:?} in:\n{shown}"));
            }
        }
        assert!(shown.len() < 8_000, "{name}: {} bytes", shown.len());
    }
    assert!(misses.is_empty(), "{}", misses.join("\n\n"));
}

#[test]
fn generated_inputs_get_bounded_errors() {
    let loader = PlanLoader::new();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a 20 MB string",
            format!("name = \"{}\"\n", "x".repeat(20_000_000)).into_bytes(),
            "a plan file may have at most 1048576",
        ),
        (
            "a 900 KB line",
            format!("name = 1{}\n", " ".repeat(900_000)).into_bytes(),
            "1:8: invalid type: integer `1`, expected a string",
        ),
        ("100,000 levels of nesting", format!("a = {}", "[".repeat(100_000)).into_bytes(), "nesting deeper than 64"),
        ("deep JSON", "[".repeat(100_000).into_bytes(), "nesting deeper than 64"),
        ("invalid UTF-8", b"name = \"caf\xc3\x28\"\n".to_vec(), "1:12: the file is not valid UTF-8 here"),
        ("a TOML syntax error", b"name = \"x\"\n[[stages]\n".to_vec(), "2:"),
    ];
    for (what, bytes, expect) in cases {
        let format = if what.contains("JSON") { Format::Json } else { Format::Toml };
        let err = loader.check_bytes(&bytes, format, "p").expect_err(what).to_string();
        assert!(err.contains(expect), "{what}: expected {expect:?} in {}", &err[..err.len().min(2_000)]);
        assert!(err.len() < 2_000, "{what}: an error of {} bytes", err.len());
    }
}

const INJECTION: &str = r#"
name = "release back"
# ${NOT_SET_BUT_ONLY_IN_A_COMMENT}
[[targets]]
kind = "release-dir"
name = "web"
config = { root = "${DEPLOY_ROOT}" }
[[stages]]
name = "s"
parallelism = "${PARALLEL}"
steps = [{ id = "a", op = "rollback", target = "web", to = "previous" }]
"#;

#[test]
fn substituted_values_stay_data() {
    let injected = r#"/srv/app", restart = ["sh", "-c", "touch /tmp/x"], restart_timeout = "5s"#;
    let registry = registry();
    let env = |name: &str| match name {
        "DEPLOY_ROOT" => Some(injected.to_string()),
        "PARALLEL" => Some("3".to_string()),
        _ => None,
    };
    let plan = PlanLoader::new().registry(&registry).env(env).check_str(INJECTION, Format::Toml, "p.toml").unwrap();
    assert_eq!(plan.targets[0].config, serde_json::json!({ "root": injected }), "one string, no restart key");
    assert_eq!(plan.stages[0].parallelism, 3, "a number field takes a variable through a string");

    // A value that does not parse as the field's type: named by field and reference, not value.
    let env = |name: &str| match name {
        "DEPLOY_ROOT" => Some("/srv/app".to_string()),
        "PARALLEL" => Some("hunter2-secret".to_string()),
        _ => None,
    };
    let err = PlanLoader::new().env(env).check_str(INJECTION, Format::Toml, "p.toml").unwrap_err().to_string();
    assert!(err.contains("p.toml:10:15: `parallelism` takes an integer"), "{err}");
    assert!(!err.contains("hunter2"), "the substituted value is not printed: {err}");
}

#[test]
fn typed_errors_on_substituted_values_print_the_reference() {
    let text = "name = \"x\"\nbudget = \"${BUDGET}\"\n[[stages]]\nname = \"s\"\nsteps = [{ id = \"a\", op = \"approval\", prompt = \"?\" }]\n";
    let env = |_: &str| Some("s3cr3t-value".to_string());
    let err = PlanLoader::new().env(env).check_str(text, Format::Toml, "p.toml").unwrap_err().to_string();
    assert!(err.contains("p.toml:2:10") && err.contains("${BUDGET}"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[test]
fn the_sample_plans_load_strictly() {
    // Every sample plan of the repository passes the loader (with placeholders set).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plans");
    let registry = registry();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let plan = PlanLoader::new()
            .env(|name| Some(format!("/placeholder/{name}")))
            .check_file(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        // Kinds of other crates are not in this registry: only core's are checked here.
        let core_kinds: Vec<String> = registry.kinds().into_iter().map(|k| k.kind).collect();
        if plan.targets.iter().chain(&plan.verifiers).chain(&plan.snapshots).all(|s| core_kinds.contains(&s.kind)) {
            registry.validate(&plan).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}
