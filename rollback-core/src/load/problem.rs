//! What is wrong with a plan file, where: every problem has a message and, once the
//! loader has placed it, the file's line and column and a short snippet. Rendering is
//! bounded whatever the input: a snippet is at most [`SNIPPET_CHARS`] characters, a
//! message at most [`MESSAGE_CHARS`], and at most [`MAX_SHOWN`] problems are listed.

use std::fmt;

/// Longest snippet of the input shown with a problem.
pub const SNIPPET_CHARS: usize = 160;
/// Longest message shown for one problem.
pub const MESSAGE_CHARS: usize = 400;
/// Most problems listed in one error; the rest are counted.
pub const MAX_SHOWN: usize = 20;

/// One problem in a plan file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where in the document (`stages[0].steps[1].on_failure`); empty for the whole file.
    pub path: String,
    /// 1-based line and column in the file, once placed.
    pub line: Option<usize>,
    /// See `line`.
    pub column: Option<usize>,
    /// What is wrong, bounded to [`MESSAGE_CHARS`].
    pub message: String,
    /// The line of the file it is on, bounded to [`SNIPPET_CHARS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
    #[serde(skip)]
    offset: Option<usize>,
    #[serde(skip)]
    at_key: bool,
}

impl Problem {
    /// A problem with the value at `path`.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            line: None,
            column: None,
            message: bounded(&message.into(), MESSAGE_CHARS),
            snippet: None,
            offset: None,
            at_key: false,
        }
    }

    /// A problem with the key at `path` (an unknown key: point at the key, not its value).
    pub fn at_key(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { at_key: true, ..Problem::at(path, message) }
    }

    pub(crate) fn at_offset(offset: usize, message: String) -> Problem {
        Problem { offset: Some(offset), ..Problem::at("", message) }
    }

    /// A problem at a byte offset of `text`, placed at once.
    pub(crate) fn in_text(text: &str, offset: usize, message: String) -> Problem {
        let mut problem = Problem::at_offset(offset, message);
        problem.place_at(text, offset);
        problem
    }

    /// Prefixes the path (a spec's config is checked on its own, then placed in the plan).
    pub(crate) fn under(mut self, prefix: &str) -> Problem {
        self.path = match (prefix.is_empty(), self.path.is_empty()) {
            (true, _) => self.path,
            (false, true) => prefix.to_string(),
            (false, false) if self.path.starts_with('[') => format!("{prefix}{}", self.path),
            (false, false) => format!("{prefix}.{}", self.path),
        };
        self
    }

    pub(crate) fn wants_key(&self) -> bool {
        self.at_key
    }

    pub(crate) fn offset(&self) -> Option<usize> {
        self.offset
    }

    /// Sets line, column and snippet from a byte offset of `text`.
    pub(crate) fn place_at(&mut self, text: &str, offset: usize) {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        self.offset = Some(offset);
        self.line = Some(before.matches('\n').count() + 1);
        self.column = Some(text[line_start..offset].chars().count() + 1);
        let line = text[line_start..line_end].trim_end_matches('\r');
        // Show the part of a long line around the column.
        let column = self.column.unwrap_or(1) - 1;
        let skip = column.saturating_sub(SNIPPET_CHARS / 2);
        let mut snippet: String = line.chars().skip(skip).take(SNIPPET_CHARS).collect();
        if skip > 0 {
            snippet.insert(0, '…');
        }
        if line.chars().count() > skip + SNIPPET_CHARS {
            snippet.push('…');
        }
        self.snippet = Some(snippet);
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// `text` cut to `max` characters, with `…` where it was cut.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max).collect();
    cut.push('…');
    cut
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{line}:{column}: ")?,
            _ if !self.path.is_empty() => write!(f, "{}: ", self.path)?,
            _ => {}
        }
        f.write_str(&self.message)?;
        if let Some(snippet) = &self.snippet
            && !snippet.trim().is_empty()
        {
            write!(f, "\n    | {snippet}")?;
        }
        Ok(())
    }
}

/// Every problem found in one plan file, in file order.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Problems {
    /// The file (or `<plan>` for text given directly).
    pub origin: String,
    /// The problems.
    pub problems: Vec<Problem>,
}

impl Problems {
    /// No problems yet, for `origin`.
    pub fn new(origin: impl Into<String>) -> Problems {
        Problems { origin: origin.into(), problems: Vec::new() }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds one.
    pub fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    /// Into the library's error (`invalid_input`), bounded in size.
    pub fn into_error(self) -> crate::Error {
        crate::Error::invalid_input(self.to_string())
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{}: {n} problem{}", self.origin, if n == 1 { "" } else { "s" })?;
        for problem in self.problems.iter().take(MAX_SHOWN) {
            write!(f, "\n  {}:{problem}", self.origin)?;
        }
        if n > MAX_SHOWN {
            write!(f, "\n  … and {} more", n - MAX_SHOWN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_and_messages_are_cut() {
        let text = format!("a = \"{}\"\nb = 1\n", "x".repeat(20_000_000));
        let mut problem = Problem::at("a", "y".repeat(10_000));
        problem.place_at(&text, 2);
        let shown = problem.to_string();
        assert!(shown.len() < 1_000, "{}", shown.len());
        assert_eq!((problem.line, problem.column), (Some(1), Some(3)));
        let mut all = Problems::new("p.toml");
        for _ in 0..1000 {
            all.push(problem.clone());
        }
        assert!(all.to_string().len() < 20_000);
        assert!(all.to_string().ends_with("and 980 more"));
    }
}
