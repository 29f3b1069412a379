//! Strictness from a type's JSON schema: a document is walked against the schema
//! (`schemars`) and every key the type does not declare is refused, with the closest
//! valid name. This is where strictness comes from for every plan struct and kind
//! config — serde's `deny_unknown_fields` does not work through `flatten`, which
//! `Step` (its op) and several configs use; the schema has the flattened fields merged.
//!
//! The walk also converts a string that came from `${VAR}` substitution into the
//! number or boolean the schema asks for there (`parallelism = "${PAR}"`).

use serde_json::Value;

use super::document::{index_path, key_path};
use super::problem::Problem;

/// Walks `value` against `schema` (a root schema with its `$defs`): unknown keys
/// become problems; substituted strings (paths for which `substituted` says yes) are
/// converted where the schema wants a number or boolean.
pub(crate) fn check(value: &mut Value, schema: &Value, substituted: &dyn Fn(&str) -> bool) -> Vec<Problem> {
    let walker = Walker { root: schema, substituted };
    let mut problems = Vec::new();
    walker.walk(value, schema, "", &mut problems, 0);
    problems
}

/// The closest of `candidates` to `word`, if one is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1) + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" or the list of valid names (bounded).
pub(crate) fn suggest(word: &str, candidates: &[&str]) -> String {
    match closest(word, candidates.iter().copied()) {
        Some(near) => format!("did you mean `{near}`?"),
        None if candidates.is_empty() => "it takes no keys".into(),
        None => {
            let mut list: Vec<String> = candidates.iter().take(24).map(|c| format!("`{c}`")).collect();
            if candidates.len() > 24 {
                list.push(format!("and {} more", candidates.len() - 24));
            }
            format!("valid: {}", list.join(", "))
        }
    }
}

const MAX_WALK_DEPTH: usize = 256;

struct Walker<'a> {
    root: &'a Value,
    substituted: &'a dyn Fn(&str) -> bool,
}

/// How badly a value fits a schema, for choosing among `oneOf`/`anyOf` alternatives.
type Misfit = usize;

impl<'a> Walker<'a> {
    fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..32 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else { break };
            let pointer = reference.trim_start_matches('#');
            match self.root.pointer(pointer) {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    fn walk(&self, value: &mut Value, schema: &'a Value, path: &str, out: &mut Vec<Problem>, depth: usize) -> Misfit {
        if depth > MAX_WALK_DEPTH {
            return 0;
        }
        let schema = self.resolve(schema);
        match schema {
            Value::Bool(true) => return 0,
            Value::Bool(false) => return 10,
            _ => {}
        }
        self.coerce(value, schema, path, out);
        let alternatives = alternatives(schema);
        let has_own_properties = schema.get("properties").is_some();
        if !(alternatives.is_empty() || value.is_object() && has_own_properties) {
            return self.best_alternative(value, &alternatives, path, out, depth);
        }
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array)
            && !value.is_object()
        {
            return parts.iter().map(|part| self.walk(value, part, path, out, depth + 1)).sum();
        }
        if let Some(misfit) = self.type_misfit(value, schema) {
            return misfit;
        }
        match value {
            Value::Object(_) => self.walk_object(value, schema, path, out, depth),
            Value::Array(items) => {
                let prefix = schema.get("prefixItems").and_then(Value::as_array);
                let rest = schema.get("items");
                let mut misfit = 0;
                for (i, item) in items.iter_mut().enumerate() {
                    let item_schema = prefix.and_then(|p| p.get(i)).or(rest);
                    if let Some(item_schema) = item_schema {
                        misfit += self.walk(item, item_schema, &index_path(path, i), out, depth + 1);
                    }
                }
                misfit
            }
            _ => 0,
        }
    }

    /// Tries each alternative on a copy; keeps the best fit's conversions and problems.
    fn best_alternative(
        &self,
        value: &mut Value,
        alternatives: &[&'a Value],
        path: &str,
        out: &mut Vec<Problem>,
        depth: usize,
    ) -> Misfit {
        let mut best: Option<(Misfit, Value, Vec<Problem>)> = None;
        for alternative in alternatives {
            let mut copy = value.clone();
            let mut problems = Vec::new();
            let misfit = self.walk(&mut copy, alternative, path, &mut problems, depth + 1) + problems.len();
            if best.as_ref().is_none_or(|(m, _, _)| misfit < *m) {
                best = Some((misfit, copy, problems));
            }
        }
        let Some((misfit, copy, problems)) = best else { return 0 };
        *value = copy;
        let found = problems.len();
        out.extend(problems);
        misfit - found
    }

    fn walk_object(
        &self,
        value: &mut Value,
        schema: &'a Value,
        path: &str,
        out: &mut Vec<Problem>,
        depth: usize,
    ) -> Misfit {
        // A schema that declares no fields at all (`serde_json::Value`, `{}`) takes any keys.
        if ["properties", "additionalProperties", "allOf", "oneOf", "anyOf"].iter().all(|k| schema.get(*k).is_none()) {
            return 0;
        }
        let mut fields = Fields::default();
        self.collect(schema, &mut fields, depth);
        let mut misfit = 0;
        // A flattened enum: the alternative that fits the keys adds its fields.
        let alternatives = alternatives(schema);
        if !alternatives.is_empty() {
            let object = value.as_object().cloned().unwrap_or_default();
            let chosen = alternatives
                .iter()
                .map(|alternative| {
                    let mut with = fields.clone();
                    self.collect(alternative, &mut with, depth);
                    (with.misfit(&object), with)
                })
                .min_by_key(|(m, _)| *m);
            if let Some((m, with)) = chosen {
                misfit += m;
                fields = with;
            }
        }
        let Value::Object(map) = value else { return misfit };
        let names: Vec<&str> = fields.properties.iter().map(|(k, _)| k.as_str()).collect();
        for (key, item) in map.iter_mut() {
            let child = key_path(path, key);
            if let Some((_, property)) = fields.properties.iter().find(|(k, _)| k == key) {
                misfit += self.walk(item, property, &child, out, depth + 1);
            } else if let Some(extra) = fields.additional {
                misfit += self.walk(item, extra, &child, out, depth + 1);
            } else {
                out.push(Problem::at_key(child, format!("unknown key `{key}`; {}", suggest(key, &names))));
                misfit += 1;
            }
        }
        misfit
    }

    /// Fields an object schema declares: its own, its `allOf` parts', `$ref`s followed.
    fn collect(&self, schema: &'a Value, fields: &mut Fields<'a>, depth: usize) {
        if depth > MAX_WALK_DEPTH {
            return;
        }
        let schema = self.resolve(schema);
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                if !fields.properties.iter().any(|(k, _)| k == name) {
                    fields.properties.push((name.clone(), property));
                }
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            fields.required.extend(required.iter().filter_map(Value::as_str).map(str::to_string));
        }
        match schema.get("additionalProperties") {
            None | Some(Value::Bool(false)) => {}
            Some(extra) => fields.additional = Some(extra),
        }
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            for part in parts {
                self.collect(part, fields, depth + 1);
            }
        }
        // A schema of only alternatives nested in a part (a flattened enum in a flattened struct).
        if schema.get("properties").is_none() && fields.alternative_depth < 4 {
            let nested = alternatives(schema);
            if !nested.is_empty() {
                fields.alternative_depth += 1;
                for alternative in nested {
                    self.collect(alternative, fields, depth + 1);
                }
            }
        }
    }

    fn type_misfit(&self, value: &Value, schema: &Value) -> Option<Misfit> {
        if let Some(expected) = schema.get("const")
            && expected != value
        {
            return Some(10);
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            return Some(10);
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return None,
        };
        let actual = type_name(value);
        let fits = types.iter().any(|t| *t == actual || (*t == "number" && actual == "integer"));
        (!fits).then_some(10)
    }

    /// A substituted string where the schema wants a number or boolean is parsed as one.
    fn coerce(&self, value: &mut Value, schema: &Value, path: &str, out: &mut Vec<Problem>) {
        let Value::String(text) = value else { return };
        if !(self.substituted)(path) {
            return;
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return,
        };
        if types.contains(&"string") {
            return;
        }
        let converted = if types.contains(&"integer") {
            text.trim().parse::<i64>().ok().map(Value::from)
        } else if types.contains(&"number") {
            text.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number)
        } else if types.contains(&"boolean") {
            text.trim().parse::<bool>().ok().map(Value::Bool)
        } else {
            return;
        };
        match converted {
            Some(converted) => *value = converted,
            None => out.push(Problem::at(
                path,
                format!(
                    "`{}` takes {}; the substituted value does not parse as one",
                    path.rsplit('.').next().unwrap_or(path),
                    types
                        .iter()
                        .filter(|t| **t != "null")
                        .map(|t| if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
                            format!("an {t}")
                        } else {
                            format!("a {t}")
                        })
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )),
        }
    }
}

#[derive(Clone, Default)]
struct Fields<'a> {
    properties: Vec<(String, &'a Value)>,
    required: Vec<String>,
    additional: Option<&'a Value>,
    alternative_depth: usize,
}

impl Fields<'_> {
    /// How badly an object's keys fit these fields: unknown keys, missing required
    /// ones, and discriminators (`const`) with another value.
    fn misfit(&self, object: &serde_json::Map<String, Value>) -> Misfit {
        let unknown = if self.additional.is_some() {
            0
        } else {
            object.keys().filter(|k| !self.properties.iter().any(|(p, _)| p == *k)).count()
        };
        let missing = self.required.iter().filter(|r| !object.contains_key(*r)).count();
        let wrong_tag = self
            .properties
            .iter()
            .filter(|(k, schema)| {
                schema.get("const").is_some_and(|c| object.get(k).is_some_and(|v| v != c))
                    || schema
                        .get("enum")
                        .and_then(Value::as_array)
                        .is_some_and(|e| e.len() == 1 && object.get(k).is_some_and(|v| !e.contains(v)))
            })
            .count();
        unknown + 3 * missing + 10 * wrong_tag
    }
}

fn alternatives(schema: &Value) -> Vec<&Value> {
    ["oneOf", "anyOf"].iter().filter_map(|k| schema.get(*k).and_then(Value::as_array)).flatten().collect()
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Conn {
        url: Option<String>,
        db: Option<u32>,
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(tag = "mode", rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Mode {
        Flush,
        Pattern { pattern: String, batch: Option<u32> },
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Config {
        #[serde(flatten)]
        conn: Conn,
        #[serde(flatten)]
        mode: Mode,
        labels: std::collections::BTreeMap<String, String>,
    }

    fn problems(value: Value) -> Vec<String> {
        let schema = schemars::schema_for!(Config);
        let mut value = value;
        check(&mut value, schema.as_value(), &|_| false)
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    }

    #[test]
    fn unknown_keys_through_flatten_are_refused_with_the_closest_name() {
        assert_eq!(
            problems(serde_json::json!({"url": "x", "mode": "flush", "labels": {"any": "thing"}})),
            Vec::<String>::new()
        );
        let found =
            problems(serde_json::json!({"url": "x", "mode": "pattern", "pattern": "s:*", "batcj": 3, "labels": {}}));
        assert_eq!(found, ["batcj: unknown key `batcj`; did you mean `batch`?"]);
        let found = problems(serde_json::json!({"ulr": "x", "mode": "flush", "labels": {}}));
        assert_eq!(found, ["ulr: unknown key `ulr`; did you mean `url`?"]);
    }

    #[test]
    fn substituted_strings_become_the_type_the_field_wants() {
        #[derive(serde::Deserialize, schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Stage {
            parallelism: usize,
            name: String,
        }
        let schema = schemars::schema_for!(Stage);
        let mut value = serde_json::json!({"parallelism": "4", "name": "5"});
        assert!(check(&mut value, schema.as_value(), &|_| true).is_empty());
        assert_eq!(value, serde_json::json!({"parallelism": 4, "name": "5"}));
        let mut value = serde_json::json!({"parallelism": "four", "name": "x"});
        let found = check(&mut value, schema.as_value(), &|_| true);
        assert!(found[0].message.contains("`parallelism` takes an integer"), "{found:?}");
    }
}
