//! A plan file parsed into a JSON value, with the byte offset of every key and value
//! by path, so any later problem (an unknown key, a wrong type, a missing target)
//! can name the file's line and column.

use std::collections::HashMap;

use super::problem::Problem;
use super::{Format, MAX_DEPTH, MAX_PLAN_BYTES};

/// Where a key and its value start, as byte offsets into the text.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Span {
    pub key: Option<usize>,
    pub value: usize,
}

/// A parsed document: the value and the spans of its parts, by path
/// (`stages[0].steps[1].on_failure`; the root is the empty path).
#[derive(Debug)]
pub(crate) struct Document {
    pub value: serde_json::Value,
    pub spans: HashMap<String, Span>,
}

/// `parent.key` (or `key` at the root).
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    let key = if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') && !key.is_empty() {
        key.to_string()
    } else {
        serde_json::to_string(key).unwrap_or_default()
    };
    if parent.is_empty() { key } else { format!("{parent}.{key}") }
}

/// `parent[index]`.
pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Checks the raw bytes (size, UTF-8, nesting) and parses them.
pub(crate) fn parse(bytes: &[u8], format: Format) -> Result<(String, Document), Box<Problem>> {
    if bytes.len() > MAX_PLAN_BYTES {
        return Err(Box::new(Problem::at_offset(
            0,
            format!("the file is {} bytes; a plan file may have at most {MAX_PLAN_BYTES}", bytes.len()),
        )));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(e) => {
            let valid = e.valid_up_to();
            return Err(Box::new(Problem::in_text(
                &String::from_utf8_lossy(&bytes[..valid]),
                valid,
                "the file is not valid UTF-8 here".into(),
            )));
        }
    };
    if let Some(offset) = too_deep(&text, format) {
        return Err(Box::new(Problem::in_text(&text, offset, format!("nesting deeper than {MAX_DEPTH} levels"))));
    }
    let document = match format {
        Format::Toml => parse_toml(&text)?,
        Format::Json => parse_json(&text)?,
    };
    Ok((text, document))
}

fn parse_toml(text: &str) -> Result<Document, Box<Problem>> {
    let table = toml::de::DeTable::parse(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        Box::new(Problem::in_text(text, offset, format!("not valid TOML: {}", e.message())))
    })?;
    let mut spans = HashMap::new();
    spans.insert(String::new(), Span { key: None, value: 0 });
    let value = toml_table(table.get_ref(), "", &mut spans);
    Ok(Document { value, spans })
}

fn toml_table(table: &toml::de::DeTable<'_>, path: &str, spans: &mut HashMap<String, Span>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (key, value) in table.iter() {
        let child = key_path(path, key.get_ref());
        spans.insert(child.clone(), Span { key: Some(key.span().start), value: value.span().start });
        map.insert(key.get_ref().to_string(), toml_value(value.get_ref(), &child, spans));
    }
    serde_json::Value::Object(map)
}

fn toml_value(value: &toml::de::DeValue<'_>, path: &str, spans: &mut HashMap<String, Span>) -> serde_json::Value {
    use toml::de::DeValue;
    match value {
        DeValue::String(s) => serde_json::Value::String(s.to_string()),
        DeValue::Integer(i) => {
            let parsed = i64::from_str_radix(&i.as_str().replace('_', ""), i.radix());
            parsed.map_or_else(|_| serde_json::Value::String(i.as_str().to_string()), Into::into)
        }
        DeValue::Float(f) => f
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| serde_json::Value::String(f.as_str().to_string()), serde_json::Value::Number),
        DeValue::Boolean(b) => serde_json::Value::Bool(*b),
        DeValue::Datetime(d) => serde_json::Value::String(d.to_string()),
        DeValue::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let child = index_path(path, i);
                    spans.insert(child.clone(), Span { key: None, value: item.span().start });
                    toml_value(item.get_ref(), &child, spans)
                })
                .collect(),
        ),
        DeValue::Table(table) => toml_table(table, path, spans),
    }
}

fn parse_json(text: &str) -> Result<Document, Box<Problem>> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let offset = offset_of(text, e.line(), e.column());
        // serde_json's message ends with " at line L column C": the location is ours.
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
        Box::new(Problem::in_text(text, offset, format!("not valid JSON: {message}")))
    })?;
    let mut spans = HashMap::new();
    json_spans(text, &mut spans);
    Ok(Document { value, spans })
}

/// The byte offset of a 1-based line and column (serde_json counts columns in bytes).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    (start + column.saturating_sub(1)).min(text.len())
}

/// Records the offset of every key and value of a JSON text already known to be valid.
fn json_spans(text: &str, spans: &mut HashMap<String, Span>) {
    enum Frame {
        Object { path: String, key: Option<(String, usize)> },
        Array { path: String, next: usize },
    }
    let bytes = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    // The path and key offset of the value starting at `i`, advancing arrays.
    let value_slot = |stack: &mut Vec<Frame>| -> (String, Option<usize>) {
        match stack.last_mut() {
            None => (String::new(), None),
            Some(Frame::Object { path, key }) => match key.take() {
                Some((k, at)) => (key_path(path, &k), Some(at)),
                None => (path.clone(), None),
            },
            Some(Frame::Array { path, next }) => {
                *next += 1;
                (index_path(path, *next - 1), None)
            }
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = string_end(bytes, i);
                let expecting_key = matches!(stack.last(), Some(Frame::Object { key: None, .. }))
                    && next_non_space(bytes, end) == Some(b':');
                if expecting_key {
                    let key: String = serde_json::from_str(&text[i..end]).unwrap_or_default();
                    if let Some(Frame::Object { key: slot, .. }) = stack.last_mut() {
                        *slot = Some((key, i));
                    }
                } else {
                    let (path, key) = value_slot(&mut stack);
                    spans.insert(path, Span { key, value: i });
                }
                i = end;
                continue;
            }
            b'{' | b'[' => {
                let (path, key) = value_slot(&mut stack);
                spans.insert(path.clone(), Span { key, value: i });
                stack.push(if bytes[i] == b'{' {
                    Frame::Object { path, key: None }
                } else {
                    Frame::Array { path, next: 0 }
                });
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' | b':' | b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => {
                // A number, true, false or null: up to the next delimiter.
                let (path, key) = value_slot(&mut stack);
                spans.insert(path, Span { key, value: i });
                while i < bytes.len() && !matches!(bytes[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                    i += 1;
                }
                continue;
            }
        }
        i += 1;
    }
}

/// The offset just past the string starting at `start` (a `"`).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn next_non_space(bytes: &[u8], from: usize) -> Option<u8> {
    bytes[from.min(bytes.len())..].iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// The offset where brackets and braces (outside strings and comments) first nest
/// deeper than [`MAX_DEPTH`], checked before parsing so no parser recurses that far.
fn too_deep(text: &str, format: Format) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'#' if format == Format::Toml => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            quote @ (b'"' | b'\'') => {
                // TOML's literal strings (single quotes) have no escapes.
                let literal = quote == b'\'';
                let triple = format == Format::Toml && bytes[i..].starts_with(&[quote, quote, quote]);
                let close: &[u8] = if triple { &bytes[i..i + 3] } else { &bytes[i..i + 1] };
                let (open, close) = (close.len(), close.to_vec());
                i += open;
                while i < bytes.len() && !bytes[i..].starts_with(&close) {
                    if bytes[i] == b'\\' && !literal {
                        i += 1;
                    } else if bytes[i] == b'\n' && !triple {
                        break;
                    }
                    i += 1;
                }
                i += close.len();
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_spans_point_at_keys_and_values() {
        let text = "name = \"x\"\n[[stages]]\nname = \"s\"\n[[stages.steps]]\nid = \"a\"\non_falure = \"halt\"\n";
        let (_, doc) = parse(text.as_bytes(), Format::Toml).unwrap();
        let span = doc.spans["stages[0].steps[0].on_falure"];
        assert_eq!(&text[span.key.unwrap()..span.key.unwrap() + 9], "on_falure");
        assert_eq!(doc.value["stages"][0]["steps"][0]["id"], "a");
    }

    #[test]
    fn json_spans_point_at_keys_and_values() {
        let text = r#"{"name": "x", "stages": [{"name": "s", "steps": [{"id": "a", "depends_on": [1, 2]}]}]}"#;
        let (_, doc) = parse(text.as_bytes(), Format::Json).unwrap();
        let span = doc.spans["stages[0].steps[0].depends_on"];
        assert_eq!(&text[span.key.unwrap()..span.key.unwrap() + 12], "\"depends_on\"");
        assert_eq!(&text[doc.spans["stages[0].steps[0].depends_on[1]"].value..][..1], "2");
    }

    #[test]
    fn nesting_is_bounded_before_parsing() {
        let deep = format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse(deep.as_bytes(), Format::Toml).unwrap_err();
        assert!(err.message.contains("nesting"), "{err:?}");
        // Brackets inside strings and comments do not count.
        let fine = format!("a = \"{}\" # {}\n", "[".repeat(500), "{".repeat(500));
        parse(fine.as_bytes(), Format::Toml).unwrap();
    }
}
