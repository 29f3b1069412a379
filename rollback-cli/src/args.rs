//! The command line, as clap parses it: every subcommand, flag and its help text.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit status:
  0    succeeded, or already at the target (\"nothing to do\")
  1    the rollback failed, was undone or escalated (the report says what state it left)
  2    bad input: the plan, an argument or a run id is wrong; nothing was changed
  3    locked: another run holds a target (the error names it)
  4    stopped at an approval gate (--no-wait); approve, then resume
  130  interrupted (Ctrl-C, or `rollback cancel` from any host): stopped at a step boundary, journaled; resume finishes it

Environment:
  ROLLBACK_HOME   where journals, locks and artifacts live (default ./.rollback)
  ROLLBACK_JOURNAL  a shared PostgreSQL journal (--journal), ROLLBACK_HOST this runner's id (--host),
                  ROLLBACK_LEASE_TTL its lease time (--lease-ttl)
  NO_COLOR        no colour in the output
  RUST_LOG        log filter (overrides -q/-v)";

/// Journaled, verified, resumable rollbacks from plan files.
///
/// A plan file (TOML or JSON) names targets (what to roll back), verifiers (how to
/// tell it worked), snapshots (what to keep first) and stages of steps. `rollback
/// kinds` lists what a plan can use and `rollback explain KIND` shows its fields.
/// `${VAR}` inside a string value is replaced by the environment variable, as text.
#[derive(Debug, Parser)]
#[command(name = "rollback", version, about, long_about, after_long_help = EXIT_CODES, after_help = "See --help for exit codes.")]
#[command(propagate_version = true, arg_required_else_help = true)]
pub struct Cli {
    /// Where journals, locks and artifacts live. Read-only commands never create it.
    #[arg(long, global = true, env = "ROLLBACK_HOME", default_value = ".rollback", value_name = "DIR")]
    pub home: PathBuf,

    /// The journal, shared by every runner host: a PostgreSQL URL
    /// (`postgres://user@db/ops`, the password from PGPASSWORD or ~/.pgpass), or where
    /// to read the whole URL so its password is on no command line: `env:VAR` or
    /// `file:PATH`. Default: the file journal in the home. Artifacts stay in the home.
    #[arg(long, global = true, env = "ROLLBACK_JOURNAL", hide_env_values = true, value_name = "URL|env:VAR|file:PATH")]
    pub journal: Option<JournalArg>,

    /// This runner's host id, in its leases and in the runs it starts (default: the
    /// hostname): give each runner sharing a journal its own.
    #[arg(long, global = true, env = "ROLLBACK_HOST", value_name = "ID")]
    pub host: Option<String>,

    /// How long a runner's lease on its targets lasts unrenewed (it renews every third
    /// of it): how soon another host may resume a run whose runner died.
    #[arg(long, global = true, env = "ROLLBACK_LEASE_TTL", default_value = "30s", value_name = "DURATION",
          value_parser = humantime::parse_duration)]
    pub lease_ttl: std::time::Duration,

    /// Less output: errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More log output (-v: info, -vv: debug, -vvv: trace).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// Text for people or JSON for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Readable text.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

#[derive(Debug, Args)]
pub struct PlanArg {
    /// The plan file (.toml or .json).
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Why the rollback happens (journaled, reported, sent to notifiers).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Do not ask for confirmation on a terminal.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Run a plan with `previous`/`back = N` again although its last run already
    /// rolled the target back (this goes one release further).
    #[arg(long)]
    pub again: bool,
    /// Stop at an approval gate instead of waiting (exit 4); `approve`, then `resume`.
    #[arg(long)]
    pub no_wait: bool,
    /// Print the final report as text or JSON.
    #[arg(long, short, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a plan offline: syntax, unknown keys, kinds and their configs,
    /// references, `${VAR}`s. Every problem with file:line:col; nothing is contacted.
    Validate(PlanArg),

    /// Show the whole plan as it would run now: each step's change (from -> to),
    /// reversibility, data loss and full preview (SQL, keys, diffs). Changes nothing.
    #[command(name = "dry-run")]
    DryRun {
        #[command(flatten)]
        plan: PlanArg,
        /// Text for people or JSON for programs.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },

    /// Run the rollback: preflight every step, then apply, verify and journal each.
    Run(RunArgs),

    /// Rehearse a plan (named "drill: …") and time it against its budget.
    Drill(RunArgs),

    /// Finish a run that stopped (crash, Ctrl-C, gate, escalation), deciding each
    /// in-flight step by what its backend shows.
    Resume {
        /// The run id (see `rollback runs`).
        run: String,
        /// Stop at an approval gate instead of waiting (exit 4).
        #[arg(long)]
        no_wait: bool,
        /// Print the final report as text or JSON.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },

    /// Approve (or reject) an approval gate of a run, from any process.
    Approve {
        /// The run id.
        run: String,
        /// The approval step's id.
        step: String,
        /// Who decides (must be on the gate's list of approvers, if it has one).
        #[arg(long, value_name = "NAME")]
        by: String,
        /// Reject instead of approve: the run halts.
        #[arg(long)]
        reject: bool,
    },

    /// Ask a running run to stop at its next step boundary, from any process or host
    /// sharing its journal; it ends `cancelled` and `resume` continues it.
    Cancel {
        /// The run id.
        run: String,
        /// Who asks (journaled, and named in the run's state).
        #[arg(long, value_name = "NAME")]
        by: String,
    },

    /// Show a run's report: a timeline of its steps and what it left.
    Report {
        /// The run id.
        run: String,
        /// Text for people or JSON for programs.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
        /// Also write a self-contained HTML page (timeline and verification plot).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },

    /// The rollback history: versions from and to, reason, duration, escalations.
    History {
        /// Only runs that changed this target.
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
        /// Only runs since this time: RFC 3339 (2025-10-16T18:00:00Z) or an age (2h, 7d).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Text for people or JSON for programs.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },

    /// Recent runs and their states, newest first.
    Runs {
        /// How many to show.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        /// Text for people or JSON for programs.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },

    /// Every kind a plan can use: targets, verifiers, snapshots.
    Kinds {
        /// Text for people or JSON for programs.
        #[arg(long, short, value_enum, default_value_t)]
        output: Output,
    },

    /// A kind's config fields with types, defaults and docs, and a skeleton to paste
    /// into a plan; `explain plan` shows the plan file's own fields.
    Explain {
        /// A kind from `rollback kinds`, or `plan`.
        kind: String,
    },

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff): `rollback man | man -l -`.
    Man,

    /// Verification tools: a controllable service, a live probe loop, benchmarks and
    /// what-if replays of journaled verifications.
    #[command(subcommand)]
    Verify(VerifyCommand),
}

/// The verifier to use: one of a plan file's `[[verifiers]]`.
#[derive(Debug, Args)]
pub struct VerifierArg {
    /// The plan file declaring the verifier (loaded as strictly as for `rollback run`).
    pub plan: PathBuf,
    /// Which of its verifiers (default: its only one).
    #[arg(long, value_name = "NAME")]
    pub verifier: Option<String>,
}

/// `rollback verify …`.
#[derive(Debug, clap::Subcommand)]
pub enum VerifyCommand {
    /// Serve a controllable health endpoint (with Prometheus metrics) until Ctrl-C:
    /// healthy, unhealthy, slow, flapping or erroring by schedule, or switched with
    /// `curl -d unhealthy http://ADDR/control`.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// Modes over time: `0s=healthy,5s=unhealthy,20s=slow:200ms,30s=erroring:0.3`.
        #[arg(long, default_value = "0s=healthy", value_name = "AT=MODE,…")]
        schedule: String,
    },
    /// Run one probe loop against the real endpoint, printing each observation and
    /// the verdict: what the rollback will see. Exit 0 on a pass, 1 otherwise.
    Run {
        #[command(flatten)]
        spec: VerifierArg,
        /// Probe policy settings over the defaults: `interval=1s,passes=3,deadline=30s`.
        #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
        policy: Vec<String>,
        /// Output format (json: the verdict with every check).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Benchmark a verifier: check latency p50/p90/p99/max and checks/s; with
    /// `--lab`, the detection delay and requests per verdict through a state change
    /// of a `rollback verify serve` service.
    Bench {
        #[command(flatten)]
        spec: VerifierArg,
        /// Probe policy for the detection trials: `interval=500ms,passes=3`.
        #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
        policy: Vec<String>,
        /// Checks for the latency measurement.
        #[arg(long, default_value_t = 200)]
        checks: usize,
        /// Checks at once for the latency measurement.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// The lab service's URL (`http://127.0.0.1:8080`), switched through /control.
        #[arg(long, value_name = "URL")]
        lab: Option<String>,
        /// The service's mode when a trial starts.
        #[arg(long, default_value = "unhealthy", value_name = "MODE")]
        from: String,
        /// The mode it switches to.
        #[arg(long, default_value = "healthy", value_name = "MODE")]
        to: String,
        /// When it switches, from the trial's start.
        #[arg(long, default_value = "2s", value_name = "DURATION")]
        switch_after: String,
        /// The switch comes at a random moment up to this long after `--switch-after`
        /// (give the probe's interval, so trials do not all switch at one phase).
        #[arg(long, default_value = "0s", value_name = "DURATION")]
        spread: String,
        /// How long the service is `--from` before each trial's probe starts: at least
        /// the scrape interval for a verifier that reads a scraped metric.
        #[arg(long, default_value = "0s", value_name = "DURATION")]
        settle: String,
        /// Detection trials.
        #[arg(long, default_value_t = 5)]
        trials: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Re-decide the journaled verify steps of finished runs under another probe
    /// policy (default: each step's own): when they would have passed or failed, at
    /// what cost in checks, where a false alarm or a missed regression would have been.
    Replay {
        /// Run ids.
        #[arg(required = true, value_name = "RUN")]
        runs: Vec<String>,
        /// Probe policy settings over the defaults: `interval=5s,passes=2`.
        #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
        policy: Vec<String>,
        /// Take the last observation to hold after the record ends (else a policy
        /// needing longer is "undetermined").
        #[arg(long)]
        assume_last_holds: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Replay recorded signals through the decision policy and print when each
    /// threshold would have fired: from a JSON-lines file (`{"at": "…", "signals":
    /// {"error_rate": 0.02}}`), or from Prometheus range queries over a past window
    /// (`--prometheus URL --query error_rate=PROMQL --since 2h`).
    #[command(group = clap::ArgGroup::new("source").required(true).args(["file", "prometheus"]))]
    ReplaySignals {
        /// The JSON-lines file.
        file: Option<PathBuf>,
        /// A Prometheus server to read the signals from instead.
        #[arg(long, value_name = "URL")]
        prometheus: Option<String>,
        /// One query per signal, repeatable: `error_rate=PROMQL`, `p99_ms=PROMQL`,
        /// `baseline_p99_ms`, `unavailable_seconds`, `users_affected`, `window=5m`.
        #[arg(long = "query", value_name = "SIGNAL=PROMQL", requires = "prometheus")]
        queries: Vec<String>,
        /// The window's start: an RFC 3339 time or how long ago (`2h`).
        #[arg(long, default_value = "30m", requires = "prometheus")]
        since: String,
        /// The window's end: an RFC 3339 time or how long ago (default: now).
        #[arg(long, requires = "prometheus")]
        until: Option<String>,
        /// One point every STEP.
        #[arg(long, default_value = "15s", requires = "prometheus")]
        step: String,
        /// Decision thresholds over the defaults: `error_rate_high=0.02`.
        #[arg(long = "threshold", value_delimiter = ',', value_name = "KEY=VALUE")]
        thresholds: Vec<String>,
        /// Start from runbook 003's policy instead of the default.
        #[arg(long)]
        runbook_003: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// `--journal`: the shared journal's URL, or a reference to where it is read.
/// Neither `Debug` nor an error shows the URL.
#[derive(Debug, Clone)]
pub enum JournalArg {
    /// Given on the command line (or in `ROLLBACK_JOURNAL`).
    Url(rollback_core::Secret),
    /// Read when the journal is opened.
    From(rollback_core::SecretRef),
}

impl std::str::FromStr for JournalArg {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        use rollback_core::SecretRef;
        let reference = match text.split_once(':') {
            Some(("env", var)) if !var.is_empty() => SecretRef::Env { var: var.to_owned() },
            Some(("file", path)) if !path.is_empty() => SecretRef::File { path: path.into() },
            _ => return Ok(JournalArg::Url(rollback_core::Secret::new(text))),
        };
        Ok(JournalArg::From(reference))
    }
}

impl JournalArg {
    /// The URL itself.
    pub fn resolve(&self) -> rollback_core::Result<rollback_core::Secret> {
        match self {
            JournalArg::Url(url) => Ok(url.clone()),
            JournalArg::From(reference) => reference.resolve(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::JournalArg;
    use rollback_core::SecretRef;

    #[test]
    fn a_journal_is_a_url_or_where_to_read_one_and_never_shown() {
        let url: JournalArg = "postgres://ops:hunter2@db/ops".parse().unwrap();
        assert!(matches!(&url, JournalArg::Url(u) if u.expose() == "postgres://ops:hunter2@db/ops"));
        assert!(!format!("{url:?}").contains("hunter2"), "{url:?}");
        let from_env: JournalArg = "env:OPS_JOURNAL".parse().unwrap();
        assert!(matches!(from_env, JournalArg::From(SecretRef::Env { ref var }) if var == "OPS_JOURNAL"));
        let from_file: JournalArg = "file:/run/secrets/journal".parse().unwrap();
        assert!(matches!(from_file, JournalArg::From(SecretRef::File { ref path }) if path.ends_with("journal")));
        let err = "env:ROLLBACK_TEST_SURELY_UNSET".parse::<JournalArg>().unwrap().resolve().unwrap_err();
        assert!(err.to_string().contains("ROLLBACK_TEST_SURELY_UNSET"), "{err}");
    }
}
