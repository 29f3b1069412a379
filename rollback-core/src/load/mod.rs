//! The plan loader: the one place a plan file becomes a [`Plan`], checked as far as
//! it can be without touching a backend.
//!
//! 1. The bytes: at most [`MAX_PLAN_BYTES`], UTF-8, nesting at most [`MAX_DEPTH`].
//! 2. Parsed (TOML or JSON) into a document that keeps every key's line and column.
//! 3. `${VAR}` substituted inside string values only, as strings (never parsed again
//!    as plan syntax); errors print the `${VAR}` reference, never the value.
//! 4. Strict: every key of the plan, its stages and steps, and (with a
//!    [`Registry`]) every spec's config is checked against its type's schema; an
//!    unknown key is refused with the closest valid name.
//! 5. Typed, then checked offline: names that become paths, references between
//!    steps, budgets, durations, and (with a registry) kinds and component names.
//!
//! Every problem is reported at once, each with `file:line:col`, in bounded size.
//!
//! ```
//! use rollback_core::load::{Format, PlanLoader};
//! let text = r#"
//! name = "web back"
//! [[stages]]
//! name = "app"
//! [[stages.steps]]
//! id = "web-back"
//! op = "rollback"
//! target = "web"
//! to = "previous"
//! on_falure = "compensate"
//! "#;
//! let err = PlanLoader::new().check_str(text, Format::Toml, "plan.toml").unwrap_err();
//! let shown = err.to_string();
//! assert!(shown.contains("plan.toml:10:1: unknown key `on_falure`; did you mean `on_failure`?"), "{shown}");
//! ```

mod document;
mod problem;
pub(crate) mod strict;
mod substitute;

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

pub use problem::{MAX_SHOWN, MESSAGE_CHARS, Problem, Problems, SNIPPET_CHARS};
pub use strict::closest;

use crate::{Error, Plan, Registry, Result};
use document::{Document, Span};

/// Largest plan file accepted (1 MiB; a thousand-step plan is about 100 KB).
pub const MAX_PLAN_BYTES: usize = 1 << 20;
/// Deepest nesting of arrays and tables accepted.
pub const MAX_DEPTH: usize = 64;

/// How a plan file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML (the default for plan files).
    Toml,
    /// JSON.
    Json,
}

impl Format {
    /// JSON for a `.json` file, TOML for anything else.
    pub fn of_path(path: &Path) -> Format {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) { Format::Json } else { Format::Toml }
    }
}

type Env<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Loads plan files: parse, substitute, check strictly, validate offline.
pub struct PlanLoader<'a> {
    registry: Option<&'a Registry>,
    env: Option<Env<'a>>,
}

impl Default for PlanLoader<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> PlanLoader<'a> {
    /// A loader substituting from the process environment, without a registry (kind
    /// configs and component names are then not checked).
    pub fn new() -> Self {
        PlanLoader { registry: None, env: Some(Box::new(|name| std::env::var(name).ok())) }
    }

    /// Also checks every spec against its kind's config type, and that every step
    /// names a declared or registered component.
    pub fn registry(mut self, registry: &'a Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Substitutes `${VAR}` from this function instead of the environment.
    pub fn env(mut self, env: impl Fn(&str) -> Option<String> + 'a) -> Self {
        self.env = Some(Box::new(env));
        self
    }

    /// No substitution: `${…}` stays as written (journaled plans, generated plans).
    pub fn literal(mut self) -> Self {
        self.env = None;
        self
    }

    /// Reads and checks a plan file; every problem in one bounded error.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Plan> {
        self.check_file(path).map_err(Problems::into_error)
    }

    /// Reads and checks a plan file; every problem, placed.
    pub fn check_file(&self, path: impl AsRef<Path>) -> std::result::Result<Plan, Problems> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let fail = |message: String| {
            let mut problems = Problems::new(&origin);
            problems.push(Problem::at("", message));
            problems
        };
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read the plan file: {e}")))?;
        if meta.is_dir() {
            return Err(fail("is a directory, not a plan file".into()));
        }
        if meta.len() > MAX_PLAN_BYTES as u64 {
            return Err(fail(format!(
                "the file is {} bytes; a plan file may have at most {MAX_PLAN_BYTES}",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the plan file: {e}")))?;
        self.check_bytes(&bytes, Format::of_path(path), &origin)
    }

    /// Checks plan text.
    pub fn check_str(&self, text: &str, format: Format, origin: &str) -> std::result::Result<Plan, Problems> {
        self.check_bytes(text.as_bytes(), format, origin)
    }

    /// Checks plan bytes (which need not be UTF-8: that is checked too).
    pub fn check_bytes(&self, bytes: &[u8], format: Format, origin: &str) -> std::result::Result<Plan, Problems> {
        let mut problems = Problems::new(origin);
        let (text, mut document) = match document::parse(bytes, format) {
            Ok(parsed) => parsed,
            Err(problem) => {
                problems.push(*problem);
                return Err(problems);
            }
        };
        let mut found = Vec::new();
        let written = match &self.env {
            Some(env) => substitute::substitute(&mut document.value, env.as_ref(), &mut found),
            None => HashMap::new(),
        };
        let is_substituted = |path: &str| written.contains_key(path);
        found.extend(strict::check(&mut document.value, plan_schema(), &is_substituted));
        if let Some(registry) = self.registry {
            found.extend(check_configs(&mut document.value, registry, &is_substituted));
        }
        let plan = match serde_path_to_error::deserialize::<_, Plan>(&document.value) {
            Ok(plan) => Some(plan),
            Err(e) => {
                let path = serde_path(e.path());
                let message = e.inner().to_string();
                // An unknown field serde saw is one the schema walk reported, with its line.
                let reported = message.starts_with("unknown field") && !found.is_empty();
                if !reported && !found.iter().any(|p| p.path == path) {
                    found.push(Problem::at(&path, typed_message(&message, &path, &written)));
                }
                None
            }
        };
        if let Some(plan) = &plan {
            found.extend(plan.problems());
            if let Some(registry) = self.registry {
                for problem in registry.problems(plan) {
                    // The schema walk above already found the unknown keys.
                    if !found.iter().any(|p| p.path == problem.path && p.message == problem.message) {
                        found.push(redact(problem, &written));
                    }
                }
            }
        }
        place(&mut found, &text, &document);
        match plan {
            Some(plan) if found.is_empty() => Ok(plan),
            _ => {
                problems.problems = found;
                Err(problems)
            }
        }
    }
}

/// Walks every spec's config against its kind's schema, in the document (so
/// substituted numbers and booleans are converted before the plan is read).
fn check_configs(
    document: &mut serde_json::Value,
    registry: &Registry,
    is_substituted: &dyn Fn(&str) -> bool,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for list in ["targets", "verifiers", "snapshots"] {
        let Some(specs) = document.get_mut(list).and_then(serde_json::Value::as_array_mut) else { continue };
        for (i, spec) in specs.iter_mut().enumerate() {
            let Some(kind) = spec.get("kind").and_then(serde_json::Value::as_str).map(str::to_string) else { continue };
            let Some(schema) = registry.config_schema(list, &kind) else { continue };
            let Some(config) = spec.get_mut("config") else { continue };
            let prefix = format!("{list}[{i}].config");
            let inner = |path: &str| is_substituted(&Problem::at(path, "").under(&prefix).path);
            out.extend(strict::check(config, schema, &inner).into_iter().map(|p| p.under(&prefix)));
        }
    }
    out
}

/// The plan file's JSON schema (what `rollback explain plan` prints), generated once.
///
/// ```
/// let schema = rollback_core::load::plan_schema();
/// assert!(schema["properties"]["stages"].is_object());
/// ```
pub fn plan_schema() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(|| schemars::schema_for!(Plan).to_value())
}

/// A serde path (`stages[0].steps[1].to`) in the document's path syntax.
pub(crate) fn serde_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out = document::index_path(&out, *index),
            Segment::Map { key } => out = document::key_path(&out, key),
            Segment::Enum { variant } => out = document::key_path(&out, variant),
            Segment::Unknown => {}
        }
    }
    out
}

/// serde's message for a typed error, with the closest name for an unknown variant
/// or field, and without the value when it came from substitution.
pub(crate) fn typed_message(message: &str, path: &str, written: &HashMap<String, String>) -> String {
    let mut message = message.to_string();
    if let Some(original) = written.get(path) {
        let expected = message.find("expected").map(|i| message[i..].to_string()).unwrap_or_default();
        message = format!(
            "the value substituted for {original} is not valid here{}",
            if expected.is_empty() { String::new() } else { format!(": {expected}") }
        );
    } else if let Some(rest) =
        message.strip_prefix("unknown variant `").or_else(|| message.strip_prefix("unknown field `"))
    {
        let word = rest.split('`').next().unwrap_or("");
        let candidates: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
        if let Some(near) = closest(word, candidates.iter().copied()) {
            message = format!("{message}; did you mean `{near}`?");
        }
    }
    problem::bounded(&message, MESSAGE_CHARS)
}

/// A problem whose path holds a substituted value: its message names the reference.
fn redact(problem: Problem, written: &HashMap<String, String>) -> Problem {
    match written.get(&problem.path) {
        Some(original) if problem.message.contains("invalid") => {
            let mut problem = problem;
            let message = typed_message(&problem.message, &problem.path, written);
            problem.message = format!("{message} (from {original})");
            problem
        }
        _ => problem,
    }
}

/// Gives each problem its line, column and snippet: the span of its path, or of the
/// nearest enclosing part that has one.
fn place(problems: &mut [Problem], text: &str, document: &Document) {
    for problem in problems.iter_mut() {
        if problem.line.is_some() {
            continue;
        }
        let span = nearest_span(&problem.path, &document.spans);
        let offset = match (problem.offset(), span) {
            (Some(offset), _) => offset,
            (None, Some(span)) if problem.wants_key() => span.key.unwrap_or(span.value),
            (None, Some(span)) => span.value,
            (None, None) => 0,
        };
        problem.place_at(text, offset);
    }
    problems.sort_by_key(|p| p.offset().unwrap_or(0));
}

fn nearest_span(path: &str, spans: &HashMap<String, Span>) -> Option<Span> {
    let mut path = path;
    loop {
        if let Some(span) = spans.get(path) {
            return Some(*span);
        }
        if path.is_empty() {
            return None;
        }
        let cut = path.rfind(['.', '[']).unwrap_or(0);
        path = &path[..cut];
    }
}

/// Loads a plan file with the process environment and, if given, a registry: the
/// shorthand for [`PlanLoader`].
pub fn load_plan_file(path: impl AsRef<Path>, registry: Option<&Registry>) -> Result<Plan> {
    let mut loader = PlanLoader::new();
    if let Some(registry) = registry {
        loader = loader.registry(registry);
    }
    loader.load_file(path).map_err(|e: Error| e.with_operation("load plan"))
}

/// `text` cut to `max` characters (for names echoed in messages).
pub(crate) fn problem_text(text: &str, max: usize) -> String {
    problem::bounded(text, max)
}
