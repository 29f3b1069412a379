use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

use super::{Notifier, message};
use crate::verify::http_support::{client, env_headers, parse_url, redact_url};
use crate::{Error, ErrorKind, Event, Result};

/// What a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"text": <message>, "event": <the event as JSON>}`.
    #[default]
    Json,
    /// A Slack-compatible incoming webhook: `{"text": <message>}`.
    Slack,
}

/// Posts events to a webhook (a generic JSON receiver, or Slack / Mattermost incoming
/// webhooks). Only people-facing events unless `all_events`. Each post has a timeout;
/// a failure is returned (the engine journals it and carries on).
///
/// ```
/// use rollback_core::notify::{WebhookFormat, WebhookNotifier};
/// let hook = WebhookNotifier::new("incidents", "https://hooks.example.invalid/T000/B000", WebhookFormat::Slack).unwrap();
/// assert!(!format!("{hook:?}").contains("T000"), "webhook URLs are secrets");
/// ```
pub struct WebhookNotifier {
    name: String,
    url: reqwest::Url,
    shown: String,
    format: WebhookFormat,
    all_events: bool,
    headers: reqwest::header::HeaderMap,
    timeout: Duration,
    client: reqwest::Client,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("name", &self.name)
            .field("host", &self.shown)
            .field("format", &self.format)
            .finish()
    }
}

impl WebhookNotifier {
    /// A notifier posting to `url`. The URL is treated as a secret (Slack's are): only
    /// its host is ever shown.
    pub fn new(name: &str, url: &str, format: WebhookFormat) -> Result<Self> {
        let url = parse_url(name, url)?;
        let shown = url.host_str().map_or_else(|| redact_url(&url), str::to_owned);
        Ok(WebhookNotifier {
            name: name.to_owned(),
            url,
            shown,
            format,
            all_events: false,
            headers: Default::default(),
            timeout: Duration::from_secs(5),
            client: client()?,
        })
    }

    /// Also posts progress events (steps started, each verification check).
    pub fn all_events(mut self, all: bool) -> Self {
        self.all_events = all;
        self
    }

    /// Adds headers whose values come from environment variables.
    pub fn headers_from_env(mut self, from_env: &BTreeMap<String, String>) -> Result<Self> {
        self.headers = env_headers(&self.name, from_env)?;
        Ok(self)
    }

    /// Sets the per-post timeout (5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(&self, event: &Event) -> Result<()> {
        let text = match message(event) {
            Some(text) => text,
            None if self.all_events => String::new(),
            None => return Ok(()),
        };
        let body = match self.format {
            WebhookFormat::Json => serde_json::json!({ "text": text, "event": event }),
            WebhookFormat::Slack => serde_json::json!({ "text": text }),
        };
        let failed = |msg: String| Error::new(ErrorKind::Backend, msg).with_context("webhook", &self.shown);
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .json(&body)
            .send()
            .await
            .map_err(|e| failed(format!("post failed: {}", e.without_url())))?;
        if !response.status().is_success() {
            return Err(failed(format!("webhook answered HTTP {}", response.status().as_u16())));
        }
        Ok(())
    }
}
