//! Notifiers: where engine events go (logs, chat, webhooks), and the runbook-style
//! messages they carry ("ROLLBACK IN PROGRESS …", "ROLLBACK COMPLETE — duration,
//! restored version").
//!
//! A failing notifier never fails the rollback: the engine journals the failure and
//! the report lists it. Events replayed from the journal on resume are not sent
//! again, and status updates already sent are journaled.

mod tracing_notifier;
#[cfg(feature = "http")]
mod webhook;

use async_trait::async_trait;

pub use tracing_notifier::TracingNotifier;
#[cfg(feature = "http")]
pub use webhook::{WebhookFormat, WebhookNotifier};

use crate::{Event, EventKind, Result, RunState};

/// Receives engine events. Usable as `Arc<dyn Notifier>`.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// The notifier's name, for logs and reports.
    fn name(&self) -> &str;
    /// Delivers one event.
    async fn notify(&self, event: &Event) -> Result<()>;
}

fn minutes(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 { format!("{secs} s") } else { format!("{} min {} s", secs / 60, secs % 60) }
}

/// The message people should see for an event, or `None` for events that are only
/// progress detail (step started, each verification check).
///
/// ```
/// use rollback_core::notify::message;
/// use rollback_core::{Event, EventKind, RunId, RunState};
/// let event = Event {
///     run: "r1".parse().unwrap(),
///     at: chrono::Utc::now(),
///     kind: EventKind::RunFinished {
///         state: RunState::Succeeded,
///         duration: std::time::Duration::from_secs(190),
///         restored: vec!["web: v1.2.3 (was v1.3.0)".into()],
///         escalation: None,
///     },
/// };
/// let text = message(&event).unwrap();
/// assert!(text.starts_with("✅ ROLLBACK COMPLETE"));
/// assert!(text.contains("Duration: 3 min 10 s") && text.contains("web: v1.2.3"));
/// ```
pub fn message(event: &Event) -> Option<String> {
    let run = &event.run;
    Some(match &event.kind {
        EventKind::RunStarted { plan, reason, budget, .. } => format!(
            "🔄 ROLLBACK IN PROGRESS\nPlan: {plan}\nReason: {}\nETA: {}\nRun: {run}\nUpdates will follow.",
            reason.as_deref().unwrap_or("not given"),
            minutes(*budget)
        ),
        EventKind::RunResumed { state } => format!("🔁 ROLLBACK RESUMED (was {state})\nRun: {run}"),
        EventKind::StatusUpdate { elapsed, state, steps_done, steps_total } => format!(
            "ℹ️ ROLLBACK STATUS T+{}: {state}, {steps_done}/{steps_total} steps done\nRun: {run}",
            minutes(*elapsed)
        ),
        EventKind::ApprovalRequested { step, prompt } => {
            format!("⏸️ APPROVAL NEEDED: {prompt}\nRun: {run}, gate {step}")
        }
        EventKind::BudgetExceeded { elapsed, budget } => {
            format!("⚠️ ROLLBACK OVER BUDGET (S3): {} > {}\nRun: {run}", minutes(*elapsed), minutes(*budget))
        }
        EventKind::Escalated { severity, reason } => {
            format!("🚨 ROLLBACK ESCALATED ({severity:?}): {reason}\nRun: {run}")
        }
        EventKind::StepFinished { step, state, error: Some(error), .. } if *state == crate::StepState::Failed => {
            format!("❗ step {step} failed: {error}\nRun: {run}")
        }
        EventKind::RunFinished { state, duration, restored, escalation } => {
            let restored = if restored.is_empty() { "nothing changed".to_string() } else { restored.join("\n  ") };
            let headline = match state {
                RunState::Succeeded => "✅ ROLLBACK COMPLETE".to_string(),
                RunState::Compensated => "↩️ ROLLBACK ABANDONED, CHANGES UNDONE".to_string(),
                other => format!("❌ ROLLBACK {}", other.as_str().to_uppercase()),
            };
            let escalation = escalation.map(|s| format!("\nEscalation: {s:?}")).unwrap_or_default();
            format!("{headline}\nDuration: {}\nRestored:\n  {restored}{escalation}\nRun: {run}", minutes(*duration))
        }
        _ => return None,
    })
}
