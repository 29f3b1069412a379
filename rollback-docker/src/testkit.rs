//! Test kit (feature `testkit`): images built locally from a static busybox, for
//! tests and benchmarks of plans with Docker targets on a machine without a registry.

use std::path::Path;
use std::process::Command;

/// Three images `<repo>:v1`, `:v2`, `:v3` built in that order with the docker CLI from
/// Debian's `/bin/busybox` (package `busybox-static`): each serves `/version` (its
/// tag) with busybox httpd on `127.0.0.1:$PORT` (host networking), stops promptly on
/// SIGTERM, and has a healthcheck that passes on v1 and v3 and fails on v2.
/// Dropping the value removes the tags.
#[derive(Debug)]
pub struct TestImages {
    /// The repository.
    pub repo: String,
    /// Image IDs of v1, v2, v3.
    pub ids: Vec<String>,
    host: String,
}

/// Runs the docker CLI against `host` and returns its stdout; panics with stderr on failure.
pub fn docker(host: &str, args: &[&str]) -> String {
    let out = Command::new("docker").env("DOCKER_HOST", host).args(args).output().expect("the docker CLI");
    assert!(out.status.success(), "docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Like [`docker`], ignoring failures (clean-up).
pub fn docker_quiet(host: &str, args: &[&str]) {
    let _ = Command::new("docker").env("DOCKER_HOST", host).args(args).output();
}

/// The Dockerfile, shared with the Python package's Docker tests (no `RUN` step: a
/// build needs no container networking, so it works whatever the daemon's bridge).
pub const DOCKERFILE: &str = include_str!("../testkit/Dockerfile");

/// Lays out `rootfs/bin/busybox` and a symlink per applet (`busybox --list`) under
/// `ctx`: what `busybox --install -s /bin` would do inside the image.
pub fn busybox_rootfs(ctx: &Path) -> std::io::Result<()> {
    let bin = ctx.join("rootfs/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/bin/busybox", bin.join("busybox"))?;
    let applets = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&applets.stdout).split_whitespace().filter(|a| *a != "busybox") {
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    Ok(())
}

impl TestImages {
    /// Builds the three images in a scratch directory under `dir`.
    pub fn build(host: &str, repo: &str, dir: &Path) -> TestImages {
        let ctx = dir.join(format!("build-{repo}"));
        std::fs::create_dir_all(ctx.join("www")).expect("a build directory");
        busybox_rootfs(&ctx).expect("/bin/busybox (Debian's busybox-static) laid out in the build context");
        std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).expect("the Dockerfile");
        let mut ids = Vec::new();
        // The repository's name in the content makes its image IDs its own: otherwise
        // every test's v2 is the same image, and one test tagging or untagging it
        // changes what another test reads as that image's history.
        std::fs::write(ctx.join("www/repo"), repo).expect("www/repo");
        for (tag, health) in [("v1", "ok"), ("v2", "fail"), ("v3", "ok")] {
            std::fs::write(ctx.join("www/version"), tag).expect("www/version");
            std::fs::write(ctx.join("www/health"), health).expect("www/health");
            let reference = format!("{repo}:{tag}");
            // No build cache: the cached `COPY rootfs` layer is shared by every test's
            // images, and a test removing its images can delete it while another
            // build is using it ("unknown parent image ID").
            docker(host, &["build", "-q", "--no-cache", "-t", &reference, &ctx.display().to_string()]);
            ids.push(docker(host, &["image", "inspect", "--format", "{{.Id}}", &reference]));
        }
        TestImages { repo: repo.to_string(), ids, host: host.to_string() }
    }

    /// `<repo>:<tag>`.
    pub fn tag(&self, tag: &str) -> String {
        format!("{}:{tag}", self.repo)
    }
}

impl Drop for TestImages {
    fn drop(&mut self) {
        for tag in ["v1", "v2", "v3"] {
            docker_quiet(&self.host, &["rmi", "-f", &self.tag(tag)]);
        }
    }
}
