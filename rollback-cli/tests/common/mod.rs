//! What the binary's tests share: where the binary and the sample plans are, and a
//! deploy root for the local targets.

use std::path::Path;

/// The `rollback` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rollback");
/// The sample plans.
pub const PLANS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/plans");

/// A Capistrano-style deploy root: two releases with `current` on the newer, and a
/// `.env.production` with one timestamped backup.
pub fn layout(root: &Path) {
    for r in ["20251015-120000", "20251016-180000"] {
        std::fs::create_dir_all(root.join("releases").join(r)).unwrap();
        std::fs::write(root.join("releases").join(r).join("REVISION"), r).unwrap();
    }
    std::os::unix::fs::symlink("releases/20251016-180000", root.join("current")).unwrap();
    std::fs::create_dir_all(root.join("shared")).unwrap();
    std::fs::write(root.join("shared/.env.production.2025-10-15-120000"), "A=1\n").unwrap();
    std::fs::write(root.join("shared/.env.production"), "A=2\n").unwrap();
}

/// What a finished `rollback` printed, shown whole when an assertion fails.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A finished process's exit code and output.
pub fn out(output: std::process::Output) -> Out {
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
