//! The live view of a run on stderr: on a terminal, one line per running step with
//! its elapsed time, the verification loop's last observation and a bar for work of
//! known size (indicatif); elsewhere, plain timestamped lines. Never escape codes
//! off a terminal, and no colour with `NO_COLOR`.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rollback_core::notify::message;
use rollback_core::{Engine, Event, EventKind, StepId};
use tokio::sync::{broadcast, oneshot};

/// How the run is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live bars (a terminal); `color` unless `NO_COLOR`.
    Bars { color: bool },
    /// Timestamped lines (a pipe, a file, CI logs).
    Lines,
    /// Nothing (`-q`).
    Quiet,
}

impl Mode {
    /// From the terminal, `NO_COLOR` and `-q`.
    pub fn detect(quiet: bool) -> Mode {
        use std::io::IsTerminal;
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars { color: colour_allowed() }
        } else {
            Mode::Lines
        }
    }
}

/// `NO_COLOR` (any non-empty value) turns colour off.
pub fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The bars in use, so log lines are printed above them instead of through them.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Writes `text` to stderr without breaking the live bars.
pub fn write_stderr(text: &[u8]) {
    let write = || {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text);
        let _ = err.flush();
    };
    match BARS.get() {
        Some(bars) => bars.suspend(write),
        None => write(),
    }
}

/// The display task; [`Live::finish`] shows what is still queued and stops it.
pub struct Live {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Live {
    /// Starts showing the engine's events.
    pub fn start(engine: &Engine, mode: Mode) -> Live {
        let events = engine.subscribe();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(show(events, stopped, mode));
        Live { stop: Some(stop), task }
    }

    /// Shows the events still queued, then stops.
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn show(mut events: broadcast::Receiver<Event>, mut stopped: oneshot::Receiver<()>, mode: Mode) {
    let mut view: Box<dyn View> = match mode {
        Mode::Bars { color } => Box::new(Bars::new(color)),
        Mode::Lines => Box::new(Lines::default()),
        Mode::Quiet => Box::new(Quiet),
    };
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => view.event(&event),
                Err(broadcast::error::RecvError::Lagged(n)) => view.note(&format!("({n} events not shown)")),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = &mut stopped => {
                while let Ok(event) = events.try_recv() {
                    view.event(&event);
                }
                break;
            }
        }
    }
    view.done();
}

trait View: Send {
    fn event(&mut self, event: &Event);
    fn note(&mut self, text: &str);
    fn done(&mut self) {}
}

struct Quiet;

impl View for Quiet {
    fn event(&mut self, _: &Event) {}
    fn note(&mut self, _: &str) {}
}

/// One running step's bar and what it last showed.
struct StepBar {
    bar: ProgressBar,
    has_length: bool,
}

struct Bars {
    multi: MultiProgress,
    steps: HashMap<StepId, StepBar>,
    color: bool,
}

impl Bars {
    fn new(color: bool) -> Self {
        let multi = BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())).clone();
        Bars { multi, steps: HashMap::new(), color }
    }

    fn style(&self, with_bar: bool) -> ProgressStyle {
        let template = match (with_bar, self.color) {
            (false, true) => "{spinner:.cyan} {prefix:.bold} {elapsed:>4} {wide_msg}",
            (false, false) => "{spinner} {prefix} {elapsed:>4} {wide_msg}",
            (true, true) => "{spinner:.cyan} {prefix:.bold} {elapsed:>4} [{bar:30.cyan/blue}] {pos}/{len} {msg}",
            (true, false) => "{spinner} {prefix} {elapsed:>4} [{bar:30}] {pos}/{len} {msg}",
        };
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .progress_chars("=> ")
    }

    fn mark(&self, ok: bool) -> &'static str {
        match (ok, self.color) {
            (true, true) => "\x1b[32m✓\x1b[0m",
            (false, true) => "\x1b[31m✗\x1b[0m",
            (true, false) => "✓",
            (false, false) => "✗",
        }
    }
}

impl View for Bars {
    fn event(&mut self, event: &Event) {
        match &event.kind {
            EventKind::StepStarted { step, description, compensation } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(self.style(false));
                bar.set_prefix(format!("{step}{}", if *compensation { " (undo)" } else { "" }));
                bar.set_message(description.clone());
                bar.enable_steady_tick(Duration::from_millis(100));
                self.steps.insert(step.clone(), StepBar { bar, has_length: false });
            }
            EventKind::Progress { step, done, total, unit } => {
                let bar_style = self.style(true);
                if let Some(s) = self.steps.get_mut(step) {
                    if let Some(total) = total {
                        if !s.has_length {
                            s.bar.set_style(bar_style);
                            s.has_length = true;
                        }
                        s.bar.set_length(*total);
                    }
                    s.bar.set_position(*done);
                    s.bar.set_message(unit.clone());
                }
            }
            EventKind::Verification { step, check } => {
                if let Some(s) = self.steps.get(step) {
                    s.bar.set_message(format!("{:?}: {} ({:.0?})", check.outcome, check.detail, check.latency));
                }
            }
            EventKind::StepFinished { step, state, duration, error, compensation } => {
                let line = format!(
                    "{} {step}{}: {state} in {duration:.1?}{}",
                    self.mark(!matches!(state, rollback_core::StepState::Failed)),
                    if *compensation { " (undo)" } else { "" },
                    error.as_ref().map(|e| format!(" — {}", e.message)).unwrap_or_default()
                );
                if let Some(s) = self.steps.remove(step) {
                    s.bar.finish_and_clear();
                    self.multi.remove(&s.bar);
                }
                let _ = self.multi.println(line);
            }
            _ => {
                if let Some(text) = message(event) {
                    let _ = self.multi.println(text);
                }
            }
        }
    }

    fn note(&mut self, text: &str) {
        let _ = self.multi.println(text);
    }

    fn done(&mut self) {
        for (_, s) in self.steps.drain() {
            s.bar.abandon();
        }
        let _ = self.multi.clear();
    }
}

/// Plain lines, each with the time; progress at most every few seconds per step.
#[derive(Default)]
struct Lines {
    last_progress: HashMap<StepId, Instant>,
}

const LINE_PROGRESS_EVERY: Duration = Duration::from_secs(2);

impl Lines {
    fn line(&self, event: &Event, text: &str) {
        let at = event.at.format("%H:%M:%S");
        let mut out = String::new();
        for line in text.lines() {
            out.push_str(&format!("{at} {line}\n"));
        }
        write_stderr(out.as_bytes());
    }
}

impl View for Lines {
    fn event(&mut self, event: &Event) {
        let text = match &event.kind {
            EventKind::StepStarted { step, description, compensation } => {
                format!("→ {step}{}: {description}", if *compensation { " (undo)" } else { "" })
            }
            EventKind::StepFinished { step, state, duration, error, .. } => format!(
                "  {step}: {state} in {duration:.1?}{}",
                error.as_ref().map(|e| format!(" — {}", e.message)).unwrap_or_default()
            ),
            EventKind::Verification { step, check } => {
                format!("  {step}: {:?} {} ({:.0?})", check.outcome, check.detail, check.latency)
            }
            EventKind::Progress { step, done, total, unit } => {
                let finished = total == &Some(*done);
                let due = self.last_progress.get(step).is_none_or(|at| at.elapsed() >= LINE_PROGRESS_EVERY);
                if !finished && !due {
                    return;
                }
                self.last_progress.insert(step.clone(), Instant::now());
                match total {
                    Some(total) => format!("  {step}: {done}/{total} {unit}"),
                    None => format!("  {step}: {done} {unit}"),
                }
            }
            _ => match message(event) {
                Some(text) => text,
                None => return,
            },
        };
        self.line(event, &text);
    }

    fn note(&mut self, text: &str) {
        write_stderr(format!("{text}\n").as_bytes());
    }
}
