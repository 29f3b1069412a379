//! `${VAR}` substitution after parsing: only inside string values, never in keys or
//! comments (they are gone by then), and the result is a string — never parsed again
//! as plan syntax, so a value with quotes, newlines or `${` stays literal text.
//! `$${` writes a literal `${`.

use std::collections::HashMap;

use serde_json::Value;

use super::document::{index_path, key_path};
use super::problem::Problem;

/// Replaces references in every string of `value`; returns the paths that had one,
/// with the string as written (`"${DEPLOY_ROOT}/current"`) — what errors print
/// instead of the substituted value, which may be a secret.
pub(crate) fn substitute(
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut Vec<Problem>,
) -> HashMap<String, String> {
    let mut written = HashMap::new();
    walk(value, "", env, out, &mut written);
    written
}

fn walk(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut Vec<Problem>,
    written: &mut HashMap<String, String>,
) {
    match value {
        Value::String(text) if text.contains('$') => match expand(text, env) {
            Ok(Some(expanded)) => {
                written.insert(path.to_string(), std::mem::replace(text, expanded));
            }
            Ok(None) => {}
            Err(message) => out.push(Problem::at(path, message)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &index_path(path, i), env, out, written);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                walk(item, &key_path(path, key), env, out, written);
            }
        }
        _ => {}
    }
}

/// The expanded text, or `None` if it has no reference.
fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
            changed = true;
        } else if let Some(inner) = after.strip_prefix("${") {
            let end = inner
                .find('}')
                .ok_or_else(|| "`${` without a closing `}` (write `$${` for a literal `${`)".to_string())?;
            let name = &inner[..end];
            if !is_name(name) {
                return Err(format!(
                    "`${{{}}}` is not a variable reference: names are letters, digits and `_`",
                    super::problem::bounded(name, 40)
                ));
            }
            out.push_str(
                &env(name).ok_or_else(|| format!("environment variable {name} is not set (used as `${{{name}}}`)"))?,
            );
            rest = &inner[end + 1..];
            changed = true;
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(changed.then_some(out))
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "ROOT" => Some("/srv/app\", restart = [\"sh\"], x = \"${HOME}".into()),
            "PORT" => Some("8080".into()),
            _ => None,
        }
    }

    #[test]
    fn values_stay_literal_text() {
        let mut value = serde_json::json!({"config": {"root": "${ROOT}", "port": "${PORT}", "cost": "$5 $${x}"}});
        let mut problems = Vec::new();
        let written = substitute(&mut value, &env, &mut problems);
        assert!(problems.is_empty());
        assert_eq!(value["config"]["root"], "/srv/app\", restart = [\"sh\"], x = \"${HOME}");
        assert_eq!(value["config"]["cost"], "$5 ${x}");
        assert_eq!(written["config.root"], "${ROOT}");
        assert_eq!(written["config.port"], "${PORT}");
    }

    #[test]
    fn unset_and_malformed_references_are_errors() {
        for (text, expect) in
            [("${NOPE}", "NOPE is not set"), ("${ROOT", "without a closing"), ("${a b}", "not a variable")]
        {
            let mut value = serde_json::json!({ "a": text });
            let mut problems = Vec::new();
            substitute(&mut value, &env, &mut problems);
            assert!(problems[0].message.contains(expect), "{text}: {problems:?}");
        }
    }
}
