//! Text for people: the dry run with its previews, the confirmation summary, the
//! history and the list of runs. (The report's timeline is core's `Display`.)

use std::fmt::Write as _;

use rollback_core::{DryRun, DryRunStep, HistoryRecord, Report, Version};

/// The data-loss lines of a dry run: what a person must read before saying yes.
pub fn data_loss_lines(dry: &DryRun) -> Vec<String> {
    dry.steps
        .iter()
        .filter_map(|s| {
            let loss = s.data_loss.as_ref().filter(|d| !d.none)?;
            let items = loss.items.map(|n| format!(" ({n} items)")).unwrap_or_default();
            Some(format!("{}: {}{items}", s.step, loss.summary))
        })
        .collect()
}

/// The whole dry run, previews in full.
pub fn dry_run(dry: &DryRun) -> String {
    let mut out = format!("dry run of {:?} (nothing was changed)\n", dry.plan);
    let loss = data_loss_lines(dry);
    if !loss.is_empty() {
        out.push_str("\nDATA LOSS:\n");
        for line in &loss {
            let _ = writeln!(out, "  ! {line}");
        }
    }
    if !dry.identities.is_empty() {
        out.push_str("\ntargets:\n");
        for (name, identity) in &dry.identities {
            let _ = writeln!(out, "  {name}: {identity}");
        }
    }
    let mut stage = "";
    for s in &dry.steps {
        if s.stage != stage {
            stage = &s.stage;
            let _ = writeln!(out, "\nstage {stage}:");
        }
        step(&mut out, s);
    }
    let todo = dry.steps.iter().filter(|s| s.change.is_some()).count();
    let done = dry.steps.iter().filter(|s| s.satisfied.is_some()).count();
    if todo == 0 && done > 0 {
        out.push_str("\nnothing to do: every target is already where the plan points\n");
    }
    out
}

fn step(out: &mut String, s: &DryRunStep) {
    let _ = writeln!(out, "  {} [{}]  {}", s.step, s.op, s.description);
    let pad = "      ";
    if let Some(c) = &s.change {
        // Version's Display shows the label and the content id: `v1.4.2 (sha256:…)`.
        let from = c.from.as_ref().map_or_else(|| "(no prior state)".to_string(), Version::to_string);
        let _ = writeln!(out, "{pad}{} {}: {from} -> {}", c.target, c.kind, c.to);
        let loss =
            if c.data_loss.none { "no data loss".to_string() } else { format!("DATA LOSS: {}", c.data_loss.summary) };
        let _ = writeln!(out, "{pad}{}; {loss}; on failure: {:?}; undo: {:?}", c.reversibility, s.on_failure, s.undo);
        if let Some(preview) = &c.preview {
            let _ = writeln!(out, "{pad}preview:");
            for line in preview.lines() {
                let _ = writeln!(out, "{pad}  | {line}");
            }
        }
    }
}

/// `rollback history` lines.
pub fn history(records: &[HistoryRecord]) -> String {
    if records.is_empty() {
        return "no rollbacks recorded\n".into();
    }
    let mut out = String::new();
    for record in records {
        let changes: Vec<String> = record
            .changes
            .iter()
            .map(|c| format!("{} {} -> {}", c.target, c.from.as_ref().map_or("?".into(), |v| v.to_string()), c.to))
            .collect();
        let _ = writeln!(
            out,
            "{}  {:<11} {:>8.1?}  {}  {}  [{}]{}{}",
            record.date.format("%Y-%m-%d %H:%M:%S"),
            record.state.as_str(),
            record.duration,
            record.run,
            record.plan,
            changes.join(", "),
            record.escalation.map(|s| format!(" {s:?}")).unwrap_or_default(),
            record.reason.as_ref().map(|r| format!(" — {r}")).unwrap_or_default()
        );
    }
    out
}

/// `rollback runs` lines: newest first.
pub fn runs(reports: &[Report]) -> String {
    if reports.is_empty() {
        return "no runs\n".into();
    }
    let mut out = format!("{:<36}  {:<19}  {:<12}  {:>8}  plan\n", "run", "started", "state", "took");
    for r in reports {
        let _ = writeln!(
            out,
            "{:<36}  {:<19}  {:<12}  {:>8}  {}",
            r.run,
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            r.state.as_str(),
            format!("{:.1?}", r.duration),
            r.plan
        );
    }
    out
}

/// What to type next when a run stopped before the end.
pub fn next_steps(report: &Report) -> Option<String> {
    use rollback_core::RunState::*;
    match report.state {
        Succeeded | Compensated => None,
        _ if crate::exit::at_gate(report) => Some(format!(
            "waiting for approval: rollback approve {} STEP --by NAME, then rollback resume {}",
            report.run, report.run
        )),
        Failed if report.steps.iter().all(|s| s.from.is_none() && s.to.is_none()) => None,
        _ => Some(format!("to finish it: rollback resume {}", report.run)),
    }
}
