//! The `rollback` binary as a user runs it: a separate process, real files and local
//! targets, a real HTTP health endpoint, Redis for work with a known size, a real
//! browser for the HTML report; asserting on exit codes, output and what the
//! targets show afterwards.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rollback_core::testkit::TestHttpServer;
use rollback_core::{Report, RunState};

mod common;

use common::{BIN, Out, PLANS, layout, out};

fn current(root: &Path) -> String {
    std::fs::read_link(root.join("current")).unwrap().to_string_lossy().into_owned()
}

struct Env {
    dir: tempfile::TempDir,
    health: String,
    _server: TestHttpServer,
}

impl Env {
    async fn new() -> Env {
        let server = TestHttpServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        layout(&dir.path().join("app"));
        Env { health: server.url("/health"), _server: server, dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("app")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A plan file written into the test's directory.
    fn plan(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("ROLLBACK_HOME", self.home())
            .env("DEPLOY_ROOT", self.root())
            .env("HEALTH_URL", &self.health)
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

fn run(cmd: &mut Command) -> Out {
    out(cmd.output().unwrap())
}

/// A release-dir plan going to an absolute release (re-runs are "nothing to do").
fn exact_plan(release: &str) -> String {
    format!(
        "name = \"app to {release}\"\n[[targets]]\nkind = \"release-dir\"\nname = \"app\"\n\
         config = {{ root = \"${{DEPLOY_ROOT}}\" }}\n[[verifiers]]\nkind = \"http\"\nname = \"health\"\n\
         config = {{ url = \"${{HEALTH_URL}}\" }}\n[[stages]]\nname = \"app\"\nsteps = [{{ id = \"app-back\", op = \
         \"rollback\", target = \"app\", to = {{ exact = \"{release}\" }} }}]\n[[stages]]\nname = \"verify\"\n\
         steps = [{{ id = \"health\", op = \"verify\", verifier = \"health\", policy = {{ interval = \"100ms\", \
         passes = 2, deadline = \"10s\" }} }}]\n"
    )
}

#[test]
fn help_on_every_level_exits_0_and_typos_get_a_suggestion() {
    for args in [&["--help"][..], &["-h"], &["help"], &["run", "--help"], &["help", "dry-run"], &["explain", "-h"]] {
        let o = run(Command::new(BIN).args(args));
        assert_eq!(o.code, 0, "{args:?}: {o}");
        assert!(o.stdout.contains("Usage:"), "{args:?}: {o}");
    }
    let long = run(Command::new(BIN).arg("--help"));
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "130"] {
        assert!(long.stdout.contains(&format!("\n  {code}")), "exit code {code} is documented: {long}");
    }
    let o = run(Command::new(BIN).arg("rn"));
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.stderr.contains("unrecognized subcommand 'rn'") && o.stderr.contains("similar subcommand exists: 'run'"),
        "{o}"
    );
    let o = run(Command::new(BIN).args(["history", "--hom", "x"]));
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("similar argument exists: '--home'"), "{o}");
    let o = run(&mut Command::new(BIN));
    assert_eq!(o.code, 2, "no subcommand is bad usage: {o}");
    assert!(o.stderr.contains("Usage:"), "{o}");
}

#[test]
fn completions_and_the_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run(Command::new(BIN).args(["completions", shell]));
        assert_eq!(o.code, 0, "{o}");
        assert!(o.stdout.contains("dry-run") && o.stdout.contains("rollback"), "{shell}: {o}");
    }
    let o = run(Command::new(BIN).arg("man"));
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains(".TH rollback") && o.stdout.contains("dry\\-run"), "{o}");
}

#[test]
fn kinds_and_explain_are_enough_to_write_a_plan() {
    let o = run(Command::new(BIN).arg("kinds"));
    assert_eq!(o.code, 0, "{o}");
    for kind in
        ["release-dir", "http", "docker-container", "k8s-deployment", "s3-restore", "alembic", "redis-invalidate"]
    {
        assert!(o.stdout.contains(kind), "{kind} is listed: {o}");
    }
    let json = run(Command::new(BIN).args(["kinds", "--output", "json"]));
    let kinds: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(kinds.as_array().unwrap().iter().all(|k| k["role"].is_string() && k["kind"].is_string()));

    let o = run(Command::new(BIN).args(["explain", "release-dir"]));
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("root: string, required") && o.stdout.contains("[[targets]]"), "{o}");
    let o = run(Command::new(BIN).args(["explain", "relase-dir"]));
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("did you mean `release-dir`?"), "{o}");

    // A plan written from explain's skeleton validates once its placeholders are filled.
    let dir = tempfile::tempdir().unwrap();
    let skeleton = o_skeleton("release-dir");
    let plan = format!(
        "name = \"from explain\"\n{}\n[[stages]]\nname = \"s\"\nsteps = [{{ id = \"a\", op = \"rollback\", target = \"my-target\", to = \"previous\" }}]\n",
        skeleton.replace('…', "/srv/web")
    );
    let path = dir.path().join("p.toml");
    std::fs::write(&path, plan).unwrap();
    let o = run(Command::new(BIN).arg("validate").arg(&path).current_dir(dir.path()));
    assert_eq!(o.code, 0, "{o}");
}

/// The `[[targets]]` skeleton `explain` prints for a kind.
fn o_skeleton(kind: &str) -> String {
    let o = run(Command::new(BIN).args(["explain", kind]));
    let start = o.stdout.find("  [[").unwrap();
    o.stdout[start..].lines().take(4).map(|l| l.trim()).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_in_an_empty_directory_create_nothing() {
    let env = Env::new().await;
    let cwd = tempfile::tempdir().unwrap();
    let plan = env.plan("exact.toml", &exact_plan("20251015-120000"));
    let plan = plan.to_str().unwrap();
    let cases: [(&[&str], i32); 9] = [
        (&["history"], 0),
        (&["runs"], 0),
        (&["report", "00000000-0000-4000-8000-000000000000"], 2),
        (&["approve", "00000000-0000-4000-8000-000000000000", "go", "--by", "me"], 2),
        (&["resume", "00000000-0000-4000-8000-000000000000"], 2),
        (&["kinds"], 0),
        (&["explain", "http"], 0),
        (&["validate", plan], 0),
        (&["dry-run", plan], 0),
    ];
    for (args, code) in cases {
        let mut cmd = env.cmd(args);
        cmd.current_dir(cwd.path()).env_remove("ROLLBACK_HOME");
        let o = run(&mut cmd);
        assert_eq!(o.code, code, "{args:?}: {o}");
        let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{args:?} created {left:?}");
    }
    assert!(!env.home().exists());
    assert_eq!(current(&env.root()), "releases/20251016-180000", "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_dry_run_run_rerun_history_runs_and_report() {
    let env = Env::new().await;
    let plan = env.plan("exact.toml", &exact_plan("20251015-120000"));
    let plan = plan.to_str().unwrap();

    let o = run(&mut env.cmd(&["validate", plan]));
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("ok") && o.stdout.contains("2 step(s)"), "{o}");

    let o = run(&mut env.cmd(&["dry-run", plan]));
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("app release-dir: 20251016-180000") && o.stdout.contains("-> 20251015-120000"), "{o}");
    let o = run(&mut env.cmd(&["dry-run", plan, "--output", "json"]));
    let dry: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o}"));
    assert_eq!(dry["steps"][0]["change"]["to"]["id"], "20251015-120000");
    assert_eq!(current(&env.root()), "releases/20251016-180000", "dry runs change nothing");

    let o = run(&mut env.cmd(&["run", plan, "--reason", "p99 900 ms"]));
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("succeeded") && o.stderr.contains("→ app-back"), "{o}");
    assert_eq!(current(&env.root()), "releases/20251015-120000");

    // Again: already there — exit 0, "nothing to do", and nothing changed.
    let o = run(&mut env.cmd(&["run", plan, "--output", "json"]));
    assert_eq!(o.code, 0, "{o}");
    let again: Report = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o}"));
    assert!(again.nothing_to_do && again.state == RunState::Succeeded, "{again}");
    assert!(again.already_done[0].contains("20251015-120000"), "{:?}", again.already_done);
    let o = run(&mut env.cmd(&["report", again.run.as_str()]));
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("nothing to do"), "{o}");
    assert_eq!(current(&env.root()), "releases/20251015-120000");

    let o = run(&mut env.cmd(&["history", "--target", "app", "--since", "1h"]));
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("app 20251016-180000 -> 20251015-120000") && o.stdout.contains("p99 900 ms"), "{o}");
    let o = run(&mut env.cmd(&["history", "--output", "json"]));
    let records: Vec<rollback_core::HistoryRecord> = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(records.len(), 2);
    let o = run(&mut env.cmd(&["history", "--since", "2999-01-01T00:00:00Z"]));
    assert!(o.stdout.contains("no rollbacks recorded"), "{o}");

    let o = run(&mut env.cmd(&["runs"]));
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.stdout.lines().filter(|l| l.contains("succeeded")).count(), 2, "{o}");
    let o = run(&mut env.cmd(&["runs", "--output", "json"]));
    let reports: Vec<Report> = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(reports[0].run, again.run, "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_plan_run_again_is_refused_unless_again() {
    let env = Env::new().await;
    let plan = format!("{PLANS}/planned-with-approval.json");
    let text = std::fs::read_to_string(&plan).unwrap().replace(
        "{ \"id\": \"approve\", \"op\": \"approval\", \"prompt\": \"roll app back one release?\", \"timeout\": \"30m\",\n        \"approvers\": [\"tech-lead\", \"product-owner\"] }",
        "{ \"id\": \"approve\", \"op\": \"approval\", \"prompt\": \"go?\", \"approvers\": [\"tech-lead\"] }",
    );
    let plan = env.plan("gated.json", &text);
    let plan = plan.to_str().unwrap();

    // --no-wait: stops at the gate, exit 4, and says what to type next.
    let o = run(&mut env.cmd(&["run", plan, "--no-wait"]));
    assert_eq!(o.code, 4, "{o}");
    assert!(o.stdout.contains("rollback approve") && o.stdout.contains("rollback resume"), "{o}");
    let stopped: String =
        o.stdout.split_whitespace().find(|w| w.len() == 36 && w.matches('-').count() == 4).unwrap().into();
    assert_eq!(current(&env.root()), "releases/20251016-180000");
    let o = run(&mut env.cmd(&["approve", &stopped, "approve", "--by", "intern"]));
    assert_eq!(o.code, 1, "not an approver: {o}");
    assert!(o.stderr.contains("tech-lead"), "{o}");
    let o = run(&mut env.cmd(&["approve", &stopped, "approve", "--by", "tech-lead"]));
    assert_eq!(o.code, 0, "{o}");
    let o = run(&mut env.cmd(&["resume", &stopped]));
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(current(&env.root()), "releases/20251015-120000");

    // `previous` again would go one release further: refused, naming the run.
    let o = run(&mut env.cmd(&["run", plan, "--no-wait"]));
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains(&stopped) && o.stderr.contains("--again"), "{o}");
    assert_eq!(current(&env.root()), "releases/20251015-120000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_for_bad_input_failure_and_a_held_lock() {
    let env = Env::new().await;
    // 2: a missing plan, a directory, a typo'd key — and nothing created.
    for (plan, expect) in
        [("/nonexistent/plan.toml", "cannot read the plan file"), (env.dir.path().to_str().unwrap(), "is a directory")]
    {
        let o = run(&mut env.cmd(&["run", plan]));
        assert_eq!(o.code, 2, "{o}");
        assert!(o.stderr.contains(expect), "{o}");
    }
    let typo = env.plan(
        "typo.toml",
        &exact_plan("20251015-120000").replace("steps = [{ id = \"app-back\"", "steps = [{ idd = \"app-back\""),
    );
    let o = run(&mut env.cmd(&["run", typo.to_str().unwrap()]));
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("typo.toml:") && o.stderr.contains("did you mean"), "{o}");
    assert!(!env.home().exists(), "bad input creates no home");

    // 1: the verification fails, the report says what was left and how to go on.
    let failing = env.plan(
        "failing.toml",
        &exact_plan("20251015-120000")
            .replace("${HEALTH_URL}", "http://127.0.0.1:9/health")
            .replace("deadline = \"10s\"", "deadline = \"1s\""),
    );
    let o = run(&mut env.cmd(&["run", failing.to_str().unwrap()]));
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stdout.contains("health") && o.stdout.contains("failed"), "{o}");

    // 3: a run waiting at a gate holds the target; a second run is refused, naming it.
    let gated = env.plan(
        "gated.toml",
        &format!(
            "{}\n[[stages]]\nname = \"later\"\nsteps = [{{ id = \"go\", op = \"approval\", prompt = \"go?\" }}]\n",
            exact_plan("20251016-180000")
        ),
    );
    let mut first = env.cmd(&["run", gated.to_str().unwrap()]).spawn().unwrap();
    wait_for_line(&mut first, "APPROVAL NEEDED", Duration::from_secs(30));
    let o = run(&mut env.cmd(&["run", gated.to_str().unwrap()]));
    assert_eq!(o.code, 3, "{o}");
    assert!(o.stderr.contains("locked by") && o.stderr.contains(&format!("pid {}", first.id())), "{o}");
    first.kill().unwrap();
    let _ = first.wait();
}

/// Reads the child's stderr until a line contains `needle`; the rest keeps draining.
fn wait_for_line(child: &mut Child, needle: &str, timeout: Duration) -> Vec<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {needle:?} within {timeout:?}: {seen:#?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_at_the_step_boundary_and_resume_finishes() {
    let env = Env::new().await;
    // A verification that takes ~2 s before the rollback stage.
    let plan = env.plan(
        "slow.toml",
        &exact_plan("20251015-120000").replacen(
            "[[stages]]\nname = \"app\"",
            "[[stages]]\nname = \"warm-up\"\nsteps = [{ id = \"before\", op = \"verify\", verifier = \"health\", \
             policy = { interval = \"400ms\", passes = 5, deadline = \"30s\" } }]\n[[stages]]\nname = \"app\"",
            1,
        ),
    );
    let mut child = env.cmd(&["run", plan.to_str().unwrap()]).spawn().unwrap();
    wait_for_line(&mut child, "→ before", Duration::from_secs(30));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 130, "{o}");
    assert!(o.stdout.contains("cancelled") && o.stdout.contains("rollback resume"), "{o}");
    assert_eq!(current(&env.root()), "releases/20251016-180000", "stopped before the rollback step");
    let run_id: String =
        o.stdout.split_whitespace().find(|w| w.len() == 36 && w.matches('-').count() == 4).unwrap().into();
    let report: Report = serde_json::from_str(&run(&mut env.cmd(&["report", &run_id, "-o", "json"])).stdout).unwrap();
    assert_eq!(report.state, RunState::Cancelled);
    assert!(report.step("before", rollback_core::journal::Phase::Forward).is_some_and(|s| s.state.is_final()));
    assert!(report.not_started.iter().any(|s| s.as_str() == "app-back"), "{report}");

    let o = run(&mut env.cmd(&["resume", &run_id]));
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(current(&env.root()), "releases/20251015-120000", "resume finished the rollback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_in_a_real_browser() {
    let env = Env::new().await;
    let plan = env.plan("exact.toml", &exact_plan("20251015-120000"));
    let o = run(&mut env.cmd(&["run", plan.to_str().unwrap(), "-o", "json"]));
    assert_eq!(o.code, 0, "{o}");
    let report: Report = serde_json::from_str(&o.stdout).unwrap();
    let page = env.dir.path().join("report.html");
    let o = run(&mut env.cmd(&["report", report.run.as_str(), "--html", page.to_str().unwrap()]));
    assert_eq!(o.code, 0, "{o}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&page).unwrap().permissions().mode() & 0o777, 0o600, "reports are private");

    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|b| {
        Command::new("sh").arg("-c").arg(format!("command -v {b}")).output().is_ok_and(|o| o.status.success())
    }) else {
        assert!(std::env::var_os("CI").is_none(), "chromium is required under CI (scripts/test.sh installs it)");
        eprintln!("SKIPPED: no chromium on this machine; the HTML report was not checked in a browser");
        return;
    };
    let profile = env.dir.path().join("chromium-profile");
    let browser = |extra: &[&str]| {
        let mut cmd = Command::new(chromium);
        cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(format!("file://{}", page.display()));
        cmd.output().unwrap()
    };
    let dom = browser(&["--dump-dom"]);
    let text = String::from_utf8_lossy(&dom.stdout);
    for step in ["app-back", "health"] {
        assert!(text.contains(step), "the page shows step {step}: {text}");
    }
    assert!(text.contains("<svg id=\"timeline\"") && text.contains("<svg id=\"verification\""), "{text}");
    assert!(text.matches("<circle").count() >= 2, "every verification check is plotted");
    let shot = env.dir.path().join("report.png");
    let o = browser(&[&format!("--screenshot={}", shot.display()), "--window-size=1000,800"]);
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {}", String::from_utf8_lossy(&o.stderr)));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "a rendered page, {} bytes", png.len());
}

/// Redis with many keys: an invalidation reports keys unlinked of N as it goes.
fn redis_plan(env: &Env, db: u32, keys: usize) -> Option<(PathBuf, String)> {
    let Ok(url) = std::env::var("ROLLBACK_TEST_REDIS_URL") else {
        assert!(std::env::var_os("CI").is_none(), "ROLLBACK_TEST_REDIS_URL must be set under CI");
        eprintln!("SKIPPED: ROLLBACK_TEST_REDIS_URL is not set; the progress bar is not checked");
        return None;
    };
    let port = url.rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    let prefix = format!("rbcli{}", std::process::id());
    let mut fill = String::new();
    for i in 0..keys {
        fill.push_str(&format!("SET {prefix}:{i} x\r\n"));
    }
    let mut cli = Command::new("redis-cli")
        .args(["-p", &port, "-n", &db.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(cli.stdin.as_mut().unwrap(), fill.as_bytes()).unwrap();
    drop(cli.stdin.take());
    assert!(cli.wait().unwrap().success());
    let plan = env.plan(
        &format!("redis-{db}.toml"),
        &format!(
            "name = \"invalidate {prefix}\"\n[[targets]]\nkind = \"redis-invalidate\"\nname = \"cache\"\n\
             config = {{ db = {db}, batch = 20, mode = \"pattern\", pattern = \"{prefix}:*\" }}\n\
             secrets = {{ url = {{ from = \"env\", var = \"RB_CLI_REDIS_URL\" }} }}\n[[stages]]\nname = \"flush\"\n\
             steps = [{{ id = \"flush\", op = \"action\", target = \"cache\", action = \"invalidate\" }}]\n"
        ),
    );
    Some((plan, url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_a_bar_on_a_terminal_and_plain_lines_in_a_pipe() {
    let env = Env::new().await;
    const KEYS: usize = 40_000;
    let Some((plan, url)) = redis_plan(&env, 12, KEYS) else { return };

    // A pipe: timestamped lines, the finishing count, no escape codes.
    let mut cmd = env.cmd(&["run", plan.to_str().unwrap()]);
    let o = run(cmd.env("RB_CLI_REDIS_URL", &url));
    assert_eq!(o.code, 0, "{o}");
    assert!(!o.stderr.contains('\x1b') && !o.stdout.contains('\x1b'), "no escape codes in a pipe: {o:?}", o = o.stderr);
    let progress = format!("flush: {KEYS}/{KEYS} keys");
    assert!(o.stderr.lines().any(|l| l.len() > 9 && l.as_bytes()[2] == b':' && l.ends_with(&progress)), "{o}");

    // A terminal (script(1) gives the child a pty): a live bar with a count of keys.
    let (plan, url) = redis_plan(&env, 13, KEYS).unwrap();
    for no_color in [false, true] {
        let (plan, url) = if no_color { redis_plan(&env, 14, KEYS).unwrap() } else { (plan.clone(), url.clone()) };
        let line = format!("{BIN} run {} --home {} --yes", plan.display(), env.home().display());
        let mut script = Command::new("script");
        script.args(["-qfec", &line, "/dev/null"]).env("RB_CLI_REDIS_URL", &url).env("TERM", "xterm-256color");
        if no_color {
            script.env("NO_COLOR", "1");
        } else {
            script.env_remove("NO_COLOR");
        }
        let o = run(script.stdin(Stdio::null()));
        assert_eq!(o.code, 0, "{o}");
        assert!(o.stdout.contains(&format!("/{KEYS} keys")), "a bar counting keys: {:?}", o.stdout);
        assert!(o.stdout.contains("=>"), "the bar itself: {:?}", o.stdout);
        let colour = ["\x1b[32m", "\x1b[36m", "\x1b[1m"].iter().any(|c| o.stdout.contains(c));
        assert_eq!(colour, !no_color, "colour only without NO_COLOR: {:?}", o.stdout);
    }
}

/// On a terminal, `run` shows what it will do (data loss first) and asks; "n" changes
/// nothing, "y" runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_asks_on_a_terminal_before_the_first_effect() {
    let env = Env::new().await;
    let plan = env.plan("exact.toml", &exact_plan("20251015-120000"));
    for (answer, code) in [("n\n", 1), ("y\n", 0)] {
        let line = format!("{BIN} run {} --home {}", plan.display(), env.home().display());
        let mut script = Command::new("script");
        script
            .args(["-qfec", &line, "/dev/null"])
            .env("DEPLOY_ROOT", env.root())
            .env("HEALTH_URL", &env.health)
            .env("TERM", "dumb")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = script.spawn().unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), answer.as_bytes()).unwrap();
        let o = out(child.wait_with_output().unwrap());
        assert_eq!(o.code, code, "{answer:?}: {o}");
        assert!(o.stdout.contains("Roll back now? [y/N]") && o.stdout.contains("app-back"), "{o}");
        let expected = if code == 0 { "releases/20251015-120000" } else { "releases/20251016-180000" };
        assert_eq!(current(&env.root()), expected, "after {answer:?}");
        if code == 1 {
            assert!(o.stdout.contains("not confirmed: nothing was changed"), "{o}");
        }
    }
}

/// `curl URL` (optionally POSTing `data`): the status code and the body.
fn curl(url: &str, data: Option<&str>) -> (u16, String) {
    let mut args = vec!["-s", "-w", "\n%{http_code}"];
    if let Some(data) = data {
        args.extend(["--data-binary", data]);
    }
    let out = Command::new("curl").args(&args).arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn verify_serve_follows_its_schedule_and_control_requests() {
    let mut child = Command::new(BIN)
        .args(["verify", "serve", "--listen", "127.0.0.1:0", "--schedule", "0s=healthy,1500ms=unhealthy"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.split_whitespace().nth(2).expect("serving on URL").to_owned();
    assert_eq!(curl(&format!("{base}/health"), None), (200, "ok".into()), "healthy first");
    std::thread::sleep(Duration::from_millis(1700).saturating_sub(started.elapsed()));
    assert_eq!(curl(&format!("{base}/health"), None).0, 503, "unhealthy from 1.5 s on");
    assert_eq!(curl(&format!("{base}/control"), Some("erroring:0.5")).0, 204);
    let codes: Vec<u16> = (0..4).map(|_| curl(&format!("{base}/health"), None).0).collect();
    assert_eq!(codes.iter().filter(|c| **c == 500).count(), 2, "half the answers err: {codes:?}");
    let (status, bad) = curl(&format!("{base}/control"), Some("sick"));
    assert!(status == 400 && bad.contains("one of healthy"), "{status} {bad}");
    let (_, metrics) = curl(&format!("{base}/metrics"), None);
    assert!(metrics.contains("rollback_lab_requests_total{code=\"503\"} 1"), "{metrics}");
    assert!(metrics.contains("rollback_lab_requests_total{code=\"500\"} 2"), "{metrics}");
    assert!(metrics.contains("rollback_lab_request_duration_seconds_count 6"), "{metrics}");
    let (_, control) = curl(&format!("{base}/control"), None);
    let control: serde_json::Value = serde_json::from_str(&control).unwrap();
    assert_eq!(control["mode"]["mode"], "erroring");
    assert_eq!(control["switches"].as_array().map(Vec::len), Some(3), "start, schedule, control: {control}");
    child.kill().unwrap();
    child.wait().unwrap();

    let bad = Command::new(BIN).args(["verify", "serve", "--schedule", "5s"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "bad input: {}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("AT=MODE"), "{}", String::from_utf8_lossy(&bad.stderr));
}

/// `--journal` / `ROLLBACK_JOURNAL`: a run journaled in PostgreSQL from one home is
/// listed and reported from another (a second runner host), and the URL's password
/// appears in no output, not even in `--help` or an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_journal_is_seen_from_another_home_and_its_password_from_nowhere() {
    let Some(admin) = rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL") else { return };
    // A database of this test's own (the journal's schema is per database).
    let name = format!("rb_cli_journal_{}", std::process::id());
    for sql in [format!("DROP DATABASE IF EXISTS {name}"), format!("CREATE DATABASE {name}")] {
        let made = Command::new("psql").args(["-X", "-q", "-d", &admin, "-c", &sql]).output().unwrap();
        assert!(made.status.success(), "{sql}: {}", String::from_utf8_lossy(&made.stderr));
    }
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(auth, _)| auth.split_once(':').map(|(_, p)| p.to_owned()));
    let env = Env::new().await;
    // Reading an empty database creates nothing: no schema, no migration.
    let o = run(env.cmd(&["runs", "--output", "json"]).env("ROLLBACK_JOURNAL", &url));
    assert_eq!((o.code, o.stdout.trim()), (0, "[]"), "{o}");
    let o = run(env.cmd(&["report", "01a24275-e4f8-7755-a56c-b36e7626b807"]).env("ROLLBACK_JOURNAL", &url));
    assert_eq!(o.code, 2, "no such run: {o}");
    let schema = Command::new("psql")
        .args(["-X", "-tA", "-d", &url, "-c", "SELECT to_regnamespace('rollback_journal') IS NULL"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&schema.stdout).trim(), "t", "a reader created the journal's schema");
    let plan = env.plan("exact.toml", &exact_plan("20251015-120000"));
    let plan = plan.to_str().unwrap();
    let mut outputs = Vec::new();
    let o = run(env.cmd(&["run", plan, "--output", "json"]).env("ROLLBACK_JOURNAL", &url));
    assert_eq!(o.code, 0, "{o}");
    let report: Report = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o}"));
    outputs.push(o.to_string());
    assert!(!env.home().join("journal").exists(), "the file journal was not used");

    let other = env.dir.path().join("other-home");
    let elsewhere = |args: &[&str]| {
        let mut cmd = env.cmd(args);
        cmd.env("ROLLBACK_HOME", &other).env("ROLLBACK_JOURNAL", &url);
        run(&mut cmd)
    };
    let o = elsewhere(&["runs"]);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains(report.run.as_str()), "{o}");
    outputs.push(o.to_string());
    let o = elsewhere(&["report", report.run.as_str()]);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("succeeded"), "{o}");
    outputs.push(o.to_string());
    outputs.push(elsewhere(&["--help"]).to_string());

    let wrong = url.replacen("://", "://nobody-rb:", 1).replacen("@", "x@", 1);
    let o = run(env.cmd(&["runs"]).env("ROLLBACK_JOURNAL", &wrong));
    assert_ne!(o.code, 0, "{o}");
    outputs.push(o.to_string());
    let o = run(env.cmd(&["runs"]).env("ROLLBACK_JOURNAL", "mysql://x/y"));
    assert_eq!(o.code, 2, "not a postgres URL is bad input: {o}");
    assert!(o.stderr.contains("postgres://"), "{o}");
    if let Some(password) = password {
        for text in &outputs {
            assert!(!text.contains(&password), "the journal's password in: {text}");
        }
    }
}
