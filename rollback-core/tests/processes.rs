//! Separate OS processes: SIGKILL at every crash point then resume in a fresh
//! process; lock contention between processes; a holder stopped past its lease.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use rollback_core::journal::{Entry, RunLog};
use rollback_core::testkit::FileTarget;
use rollback_core::{FileJournal, Journal, RunId, RunState};

const RUNNER: &str = env!("CARGO_BIN_EXE_rollback-crash-runner");

fn runner(args: &[&str], crash: Option<&str>) -> Command {
    let mut cmd = Command::new(RUNNER);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    cmd.env_remove("ROLLBACK_TEST_CRASH_AT");
    if let Some(point) = crash {
        cmd.env("ROLLBACK_TEST_CRASH_AT", point);
    }
    cmd
}

fn read_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

/// What the crash plan must leave, whatever happened on the way.
fn assert_final_state(dir: &Path, run: &RunId) {
    let t = |name: &str| dir.join("targets").join(name);
    for (name, version) in [("traffic", "on"), ("app", "v2"), ("config", "c1"), ("schema", "s1")] {
        assert_eq!(FileTarget::current_in(&t(name)).unwrap(), version, "{name} in {}", dir.display());
    }
    // Effects seen at the targets: each step's effect exactly once, nothing skipped.
    let expect = [
        ("traffic", vec![format!("{run}/traffic-off/fwd on -> off"), format!("{run}/traffic-on/fwd off -> on")]),
        ("app", vec![format!("{run}/app/fwd v3 -> v2")]),
        ("config", vec![format!("{run}/config/fwd c2 -> c1")]),
        ("schema", vec![format!("{run}/schema/fwd s3 -> s1")]),
    ];
    for (name, lines) in expect {
        assert_eq!(FileTarget::effects_in(&t(name)), lines, "effects of {name} in {}", dir.display());
    }
}

async fn intent_seqs(dir: &Path, run: &RunId) -> Vec<u64> {
    let journal = FileJournal::open(dir.join("journal")).unwrap();
    journal.read(run).await.unwrap().iter().filter(|r| matches!(r.entry, Entry::Intent { .. })).map(|r| r.seq).collect()
}

fn run_to_end(dir: &Path, crash: Option<&str>) -> (RunId, std::process::ExitStatus) {
    let mut child = runner(&["run", dir.to_str().unwrap()], crash).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let run: RunId = read_line(&mut out).strip_prefix("run ").unwrap().parse().unwrap();
    let status = child.wait().unwrap();
    (run, status)
}

#[tokio::test]
async fn sigkill_at_every_crash_point_then_resume_in_a_fresh_process() {
    let clean = tempfile::tempdir().unwrap();
    let (run, status) = run_to_end(clean.path(), None);
    assert!(status.success());
    assert_final_state(clean.path(), &run);
    let seqs = intent_seqs(clean.path(), &run).await;
    assert_eq!(seqs.len(), 5, "traffic-off, app, config, schema, traffic-on");
    // Sequence numbers shift a little between runs (parallel steps); cover a margin.
    let max = seqs.iter().max().copied().unwrap() + 2;
    let mut killed = 0;
    for seq in 1..=max {
        for when in ["before", "after"] {
            let dir = tempfile::tempdir().unwrap();
            let point = format!("{seq}:{when}");
            let (run, status) = run_to_end(dir.path(), Some(&point));
            if status.success() {
                // That sequence number was not an intent in this run: nothing to kill.
                assert_final_state(dir.path(), &run);
                continue;
            }
            assert_eq!(status.signal(), Some(9), "killed by SIGKILL at {point}");
            killed += 1;
            let journal = FileJournal::open(dir.path().join("journal")).unwrap();
            let log = RunLog::from_records(&journal.read(&run).await.unwrap()).unwrap();
            assert!(!log.state.is_terminal(), "killed mid-run at {point}");
            let output = runner(&["resume", dir.path().to_str().unwrap(), run.as_str()], None).output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "resume after {point}: {stdout}");
            assert_eq!(stdout.trim(), "state succeeded", "resume after {point}");
            assert_final_state(dir.path(), &run);
            let log = RunLog::from_records(&journal.read(&run).await.unwrap()).unwrap();
            assert_eq!(log.state, RunState::Succeeded);
        }
    }
    assert!(killed >= 10, "every intent was killed before and after its effect ({killed} kills)");
}

/// A snapshot step is a crash point too: its start is journaled durably and the hook
/// fires before and after the capture (it used to be a buffered record the hook never
/// saw, so no kill could land in a snapshot, a verification or a restore).
#[tokio::test]
async fn the_crash_hook_fires_at_a_snapshot_step_before_and_after_its_capture() {
    let clean = tempfile::tempdir().unwrap();
    let (run, status) = run_to_end(clean.path(), None);
    assert!(status.success());
    let journal = FileJournal::open(clean.path().join("journal")).unwrap();
    let snap = journal
        .read(&run)
        .await
        .unwrap()
        .iter()
        .find(|r| matches!(&r.entry, Entry::StepStarted { step, .. } if step.as_str() == "snap-schema"))
        .map(|r| r.seq)
        .expect("the snapshot step's start is journaled");
    for when in ["before", "after"] {
        let dir = tempfile::tempdir().unwrap();
        let point = format!("{snap}:{when}");
        let (run, status) = run_to_end(dir.path(), Some(&point));
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL at the snapshot step ({point})");
        let journal = FileJournal::open(dir.path().join("journal")).unwrap();
        let records = journal.read(&run).await.unwrap();
        let last = records.last().unwrap();
        assert!(
            matches!(&last.entry, Entry::StepStarted { step, .. } if step.as_str() == "snap-schema")
                && last.seq == snap,
            "the last record is the snapshot's start at {point}: {:?}",
            last.entry
        );
        let captured = dir.path().join("artifacts").exists()
            && rollback_core::testkit::files_under(&dir.path().join("artifacts"))
                .iter()
                .any(|p| p.to_string_lossy().contains("snap-schema"));
        assert_eq!(captured, when == "after", "the capture happened only for {point}");
        let output = runner(&["resume", dir.path().to_str().unwrap(), run.as_str()], None).output().unwrap();
        assert!(output.status.success(), "resume after {point}");
        assert_final_state(dir.path(), &run);
    }
}

fn spawn_reading(args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = runner(args, None).spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

#[test]
fn lock_contention_between_two_processes_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (mut a, mut a_out) = spawn_reading(&["contend", d, "web", "3000"]);
    assert!(read_line(&mut a_out).starts_with("acquired"));
    let (mut b, mut b_out) = spawn_reading(&["contend", d, "web", "0"]);
    let line = read_line(&mut b_out);
    assert!(line.starts_with("locked"), "{line}");
    assert!(line.contains(&format!("pid {}", a.id())), "names the holder's pid: {line}");
    assert_eq!(b.wait().unwrap().code(), Some(3));
    a.kill().unwrap();
    a.wait().unwrap();
    // A holder that died (SIGKILL, no release) is taken over at once on the same host.
    let (mut c, mut c_out) = spawn_reading(&["contend", d, "web", "0"]);
    assert!(read_line(&mut c_out).starts_with("acquired"));
    assert!(c.wait().unwrap().success());
}

#[test]
fn a_holder_stopped_past_its_lease_gets_its_next_append_rejected() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (mut a, mut a_out) = spawn_reading(&["hold-lease", d, "db", "300"]);
    let held = read_line(&mut a_out);
    assert!(held.starts_with("held"), "{held}");
    let a_pid = Pid::from_raw(a.id() as i32);
    kill(a_pid, Signal::SIGSTOP).unwrap();
    // While A's lease is valid, B is refused; after it expires B takes over.
    let (mut b, mut b_out) = spawn_reading(&["hold-lease", d, "db", "10000"]);
    let first = read_line(&mut b_out);
    let _ = b.wait();
    assert!(first.starts_with("locked"), "A's lease still holds: {first}");
    std::thread::sleep(Duration::from_millis(400));
    let (mut b, mut b_out) = spawn_reading(&["hold-lease", d, "db", "10000"]);
    let b_held = read_line(&mut b_out);
    assert!(b_held.starts_with("held"), "{b_held}");
    let tokens: Vec<u64> = [&held, &b_held].iter().map(|l| l.split(' ').nth(1).unwrap().parse().unwrap()).collect();
    assert!(tokens[1] > tokens[0]);
    kill(a_pid, Signal::SIGCONT).unwrap();
    a.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let verdict = read_line(&mut a_out);
    assert!(verdict.starts_with("rejected") && verdict.contains("stale fencing token"), "{verdict}");
    b.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(read_line(&mut b_out), "appended");
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
}
