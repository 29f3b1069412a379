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
