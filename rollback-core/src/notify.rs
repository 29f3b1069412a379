//! The [`Notifier`] trait: where engine events go (chat, status page, pager).

use async_trait::async_trait;

use crate::{Event, Result};

/// Receives engine events. A failing notifier is logged and never fails the run.
/// Events replayed from the journal on resume are not sent again.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// The notifier's name, for logs.
    fn name(&self) -> &str;
    /// Delivers one event.
    async fn notify(&self, event: &Event) -> Result<()>;
}
