//! `rollback report RUN --html FILE`: one self-contained page (no scripts, no external
//! files) with the run's timeline drawn as bars and its verification observations
//! plotted over time, above the report's table and what the run left.

use std::fmt::Write as _;

use rollback_core::journal::Phase;
use rollback_core::{Outcome, Report, StepState, Verdict};

const WIDTH: f64 = 900.0;
const LABEL: f64 = 180.0;
const ROW: f64 = 26.0;

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn colour(state: StepState) -> &'static str {
    match state {
        StepState::Done => "#2e9d5b",
        StepState::Failed => "#d64541",
        StepState::Skipped => "#9aa5b1",
        StepState::AwaitingApproval => "#e0a526",
        _ => "#3f7fd9",
    }
}

/// Seconds from the run's start.
fn offset(report: &Report, at: chrono::DateTime<chrono::Utc>) -> f64 {
    (at - report.started_at).num_milliseconds().max(0) as f64 / 1000.0
}

/// The page.
pub fn page(report: &Report) -> String {
    let total = report.duration.as_secs_f64().max(0.001);
    let scale = |secs: f64| LABEL + (secs / total).min(1.0) * (WIDTH - LABEL - 10.0);
    let mut out = String::new();
    let title = format!("rollback run {} — {}", report.run, report.plan);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
         body{{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2530}}\
         table{{border-collapse:collapse;margin-top:12px}}td,th{{padding:3px 10px;border-bottom:1px solid #e3e7ec;text-align:left}}\
         .state{{font-weight:600}}svg text{{font:12px system-ui,sans-serif}}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(
        out,
        "<h1>{}</h1>\n<p><span class=\"state\">{}</span> in {:.1?}, budget {:?}{}</p>",
        esc(&title),
        esc(report.state.as_str()),
        report.duration,
        report.budget,
        report.reason.as_ref().map(|r| format!(" — reason: {}", esc(r))).unwrap_or_default()
    );
    if report.nothing_to_do {
        let _ = writeln!(out, "<p>nothing to do: {}</p>", esc(&report.already_done.join("; ")));
    }

    // Timeline: one bar per step.
    let height = ROW * report.steps.len() as f64 + 30.0;
    let _ = writeln!(
        out,
        "<h2>Timeline</h2>\n<svg id=\"timeline\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"step timeline\">"
    );
    for (i, s) in report.steps.iter().enumerate() {
        let y = i as f64 * ROW + 4.0;
        let start = offset(report, s.started_at);
        let took = s.duration.map_or(0.0, |d| d.as_secs_f64());
        let (x0, x1) = (scale(start), scale(start + took));
        let undo = if s.phase == Phase::Compensation { " (undo)" } else { "" };
        let _ = writeln!(
            out,
            "<text x=\"4\" y=\"{:.1}\">{}{undo}</text><rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {} at +{start:.2}s for {took:.2}s</title></rect>",
            y + 14.0,
            esc(s.step.as_str()),
            (x1 - x0).max(2.0),
            ROW - 8.0,
            colour(s.state),
            esc(s.step.as_str()),
            esc(s.state.as_str()),
        );
    }
    let axis = height - 8.0;
    let _ = writeln!(
        out,
        "<text x=\"{LABEL}\" y=\"{axis}\">0 s</text><text x=\"{:.1}\" y=\"{axis}\" text-anchor=\"end\">{total:.1} s</text></svg>",
        WIDTH - 10.0
    );

    verification_plot(&mut out, report, &scale);

    // The table: every step, what it did.
    out.push_str("<h2>Steps</h2>\n<table><tr><th>step</th><th>at</th><th>took</th><th>state</th><th>what</th></tr>\n");
    for s in &report.steps {
        let _ = writeln!(
            out,
            "<tr><td>{}{}</td><td>+{:.1}s</td><td>{}</td><td class=\"state\" style=\"color:{}\">{}</td><td>{}{}</td></tr>",
            esc(s.step.as_str()),
            if s.phase == Phase::Compensation { " (undo)" } else { "" },
            offset(report, s.started_at),
            s.duration.map_or_else(|| "-".into(), |d| format!("{d:.1?}")),
            colour(s.state),
            esc(s.state.as_str()),
            esc(&s.description),
            s.error.as_ref().map(|e| format!("<br>error: {}", esc(&e.message))).unwrap_or_default()
        );
    }
    for step in &report.not_started {
        let _ =
            writeln!(out, "<tr><td>{}</td><td></td><td></td><td>not started</td><td></td></tr>", esc(step.as_str()));
    }
    out.push_str("</table>\n");
    if !report.left.is_empty() {
        out.push_str("<h2>What it left</h2>\n<ul>\n");
        for line in &report.left {
            let _ = writeln!(out, "<li>{}</li>", esc(line));
        }
        let _ = writeln!(out, "</ul>\n<p>resume would: {}</p>", esc(&report.resume_would));
    }
    out.push_str("</body></html>\n");
    out
}

/// Each verification check as a point: time on x, latency on y, colour by outcome.
fn verification_plot(out: &mut String, report: &Report, scale: &dyn Fn(f64) -> f64) {
    // A verify step's detail is its journaled `Verdict`.
    let checks: Vec<(String, f64, f64, Outcome, String)> = report
        .steps
        .iter()
        .filter_map(|s| Some((s, serde_json::from_value::<Verdict>(s.detail.clone()).ok()?)))
        .flat_map(|(s, verdict)| {
            verdict.checks.into_iter().map(move |c| {
                let at = offset(report, c.at);
                (s.step.to_string(), at, c.latency.as_secs_f64() * 1000.0, c.outcome, c.detail)
            })
        })
        .collect();
    if checks.is_empty() {
        return;
    }
    let max_ms = checks.iter().map(|c| c.2).fold(1.0, f64::max);
    let height = 160.0;
    let plot = height - 30.0;
    let _ = writeln!(
        out,
        "<h2>Verification</h2>\n<svg id=\"verification\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"verification checks\">\
         <text x=\"4\" y=\"14\">latency (max {max_ms:.0} ms)</text><line x1=\"{LABEL}\" y1=\"{plot}\" x2=\"{}\" y2=\"{plot}\" stroke=\"#888\"/>",
        WIDTH - 10.0
    );
    for (step, at, ms, outcome, detail) in &checks {
        let (fill, outcome) = match outcome {
            Outcome::Pass => ("#2e9d5b", "pass"),
            Outcome::Fail => ("#d64541", "fail"),
            Outcome::Inconclusive => ("#9aa5b1", "inconclusive"),
        };
        let y = plot - (ms / max_ms) * (plot - 20.0);
        let _ = writeln!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{fill}\"><title>{}: {} {} at +{at:.2}s, {ms:.0} ms</title></circle>",
            scale(*at),
            esc(step),
            esc(outcome),
            esc(detail)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{LABEL}\" y=\"{}\">● pass ● fail ● inconclusive — {} checks</text></svg>",
        height - 8.0,
        checks.len()
    );
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn text_cannot_become_markup() {
        assert_eq!(esc("<script>\"x\" & 'y'</script>"), "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;");
    }
}
