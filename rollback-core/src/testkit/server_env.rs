//! How integration tests find the real servers they need.

/// Reads the environment variable that points a test at a real server or tool
/// (`scripts/test.sh` starts the server and sets it).
///
/// Missing under `CI=true`: panics, so a missing server fails CI instead of skipping.
/// Missing locally: prints a loud `*** NOT RUN` line to stderr and returns `None`.
///
/// ```
/// use rollback_core::testkit::server_env;
/// // SAFETY-free: only reads the environment.
/// if std::env::var("CI").as_deref() != Ok("true") {
///     assert_eq!(server_env("ROLLBACK_TEST_SURELY_UNSET", "a doc example"), None);
/// }
/// ```
pub fn server_env(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set: {what} is required under CI (scripts/test.sh starts or installs it)")
        }
        _ => {
            eprintln!("\n*** NOT RUN: {what} tests need {var} (run ./scripts/test.sh) ***\n");
            None
        }
    }
}

/// Everything under `dir` (journals, reports, artifacts) as one lossy string, for
/// tests that search it for a secret or a record.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::create_dir_all(dir.path().join("a")).unwrap();
/// std::fs::write(dir.path().join("a/b.txt"), "needle").unwrap();
/// assert!(rollback_core::testkit::text_under(dir.path()).contains("needle"));
/// ```
pub fn text_under(dir: &std::path::Path) -> String {
    files_under(dir)
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

/// Every file below `dir`, recursively (none when it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
