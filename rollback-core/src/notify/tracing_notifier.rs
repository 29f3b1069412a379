use async_trait::async_trait;

use super::{Notifier, message};
use crate::{Event, Result};

/// Logs every event as a `tracing` event (target `rollback::events`): people-facing
/// messages at INFO, progress detail at DEBUG. Always safe to add.
#[derive(Debug, Default, Clone)]
pub struct TracingNotifier;

#[async_trait]
impl Notifier for TracingNotifier {
    fn name(&self) -> &str {
        "tracing"
    }

    async fn notify(&self, event: &Event) -> Result<()> {
        match message(event) {
            Some(text) => tracing::info!(target: "rollback::events", run = %event.run, "{text}"),
            None => tracing::debug!(target: "rollback::events", run = %event.run, event = ?event.kind),
        }
        Ok(())
    }
}
