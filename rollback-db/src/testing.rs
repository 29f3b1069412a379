//! Test support (feature `test-helpers`): fixtures shared by this crate's tests and
//! the benchmarks.

use std::path::{Path, PathBuf};

/// An Alembic project in `root`, made with the real CLI `program`: `alembic init`,
/// a SQLite URL, and three revisions (`0001` users, `0002` orders, `0003` coupons),
/// not applied. Returns the `alembic.ini`.
///
/// # Panics
/// When the CLI fails (test support: failing loudly is right).
pub fn alembic_project(program: &str, root: &Path) -> PathBuf {
    std::fs::create_dir_all(root).expect("the project directory");
    let out = std::process::Command::new(program)
        .args(["init", "migrations"])
        .current_dir(root)
        .output()
        .expect("run alembic");
    assert!(out.status.success(), "alembic init: {}", String::from_utf8_lossy(&out.stderr));
    let ini = root.join("alembic.ini");
    let text: Vec<String> = std::fs::read_to_string(&ini)
        .expect("alembic.ini")
        .lines()
        .map(|l| if l.starts_with("sqlalchemy.url") { "sqlalchemy.url = sqlite:///app.db".into() } else { l.into() })
        .collect();
    std::fs::write(&ini, text.join("\n")).expect("alembic.ini");
    for (i, table) in [(1, "users"), (2, "orders"), (3, "coupons")] {
        let down = if i == 1 { "None".to_string() } else { format!("'000{}'", i - 1) };
        std::fs::write(
            root.join(format!("migrations/versions/000{i}_{table}.py")),
            format!(
                "\"\"\"create {table}\"\"\"\nfrom alembic import op\nrevision = '000{i}'\ndown_revision = {down}\n\
                 branch_labels = None\ndepends_on = None\n\ndef upgrade():\n    op.execute(\"CREATE TABLE {table} (id INTEGER PRIMARY KEY)\")\n\n\
                 def downgrade():\n    op.execute(\"DROP TABLE {table}\")\n"
            ),
        )
        .expect("a revision file");
    }
    ini
}

/// The interpreter of a Python console script (`.venv/bin/alembic`): its `#!` line.
///
/// # Panics
/// When the script cannot be read or has no `#!` line.
pub fn interpreter_of(script: &str) -> PathBuf {
    let text = std::fs::read_to_string(script).expect("the script");
    let line = text.lines().next().and_then(|l| l.strip_prefix("#!")).expect("a #! line");
    PathBuf::from(line.split_whitespace().next().expect("an interpreter"))
}

/// A shell script at `path` that appends a line to `count` and runs `python` with
/// its arguments: how tests and benchmarks count the interpreters a route starts.
///
/// # Panics
/// When it cannot be written.
pub fn counting_python(path: &Path, python: &Path, count: &Path) -> PathBuf {
    let script = format!("#!/bin/sh\necho started >> '{}'\nexec '{}' \"$@\"\n", count.display(), python.display());
    std::fs::write(path, script).expect("the counting wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.to_path_buf()
}
