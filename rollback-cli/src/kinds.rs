//! What a plan can use: the registry of every compiled-in kind, and `kinds` /
//! `explain`, which read each kind's config schema from it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use rollback_core::registry::KindInfo;
use rollback_core::{Error, Registry, Result};
use serde_json::Value;

/// Every kind compiled into this binary: core's local targets and verifiers, and
/// each backend enabled by its Cargo feature (all by default) — what `rollback`
/// builds plans from.
///
/// ```
/// let kinds: Vec<String> = rollback_cli::registry().kinds().into_iter().map(|k| k.kind).collect();
/// assert!(kinds.iter().any(|k| k == "release-dir") && kinds.iter().any(|k| k == "k8s-deployment"));
/// ```
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    rollback_core::local::register_local_kinds(&mut registry);
    rollback_core::verify::register_builtin_verifiers(&mut registry);
    #[cfg(feature = "db")]
    rollback_db::register(&mut registry);
    #[cfg(feature = "docker")]
    rollback_docker::register(&mut registry);
    #[cfg(feature = "storage")]
    rollback_storage::register(&mut registry);
    #[cfg(feature = "k8s")]
    rollback_k8s::register(&mut registry);
    registry
}

/// `rollback kinds`: one line per kind.
pub fn list(kinds: &[KindInfo]) -> String {
    let mut out = String::new();
    let width = kinds.iter().map(|k| k.kind.len()).max().unwrap_or(4);
    for role in ["target", "verifier", "snapshot"] {
        let _ = writeln!(out, "{role}s:");
        for k in kinds.iter().filter(|k| k.role == role) {
            let _ = writeln!(out, "  {:<width$}  {}", k.kind, k.about);
        }
    }
    out.push_str("\n`rollback explain KIND` shows a kind's fields; `rollback explain plan` the plan file's.\n");
    out
}

/// `rollback explain KIND`: the kind's fields and a skeleton to paste into a plan.
pub fn explain(kinds: &[KindInfo], name: &str) -> Result<String> {
    if name == "plan" {
        return Ok(explain_plan());
    }
    let matching: Vec<&KindInfo> = kinds.iter().filter(|k| k.kind == name).collect();
    if matching.is_empty() {
        let names: Vec<&str> = kinds.iter().map(|k| k.kind.as_str()).chain(["plan"]).collect();
        let hint = rollback_core::load::closest(name, names.iter().copied())
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        return Err(Error::invalid_input(format!("no kind `{name}`{hint} (`rollback kinds` lists them)")));
    }
    // One name can be a target and a snapshot (`k8s-deployment`): explain each.
    Ok(matching.into_iter().map(explain_one).collect::<Vec<_>>().join("\n"))
}

/// Doc text without rustdoc's link brackets.
fn plain(doc: &str) -> String {
    doc.replace("[`", "`").replace("`]", "`")
}

fn explain_one(info: &KindInfo) -> String {
    let mut out = format!("{} ({}): {}\n", info.kind, info.role, plain(&info.about));
    let Some(schema) = &info.schema else {
        out.push_str("\nThis kind is registered at run time; its config is checked when it is built.\n");
        return out;
    };
    if let Some(text) = schema.get("description").and_then(Value::as_str) {
        let rest: Vec<&str> = text.lines().skip(1).collect();
        if !rest.join("").trim().is_empty() {
            let _ = writeln!(out, "\n{}", plain(rest.join("\n").trim()));
        }
    }
    out.push_str("\nconfig fields:\n");
    fields(&mut out, schema, schema, 1, &mut BTreeSet::new());
    let section = format!("{}s", info.role);
    let _ = write!(
        out,
        "\nin a plan:\n  [[{section}]]\n  kind = \"{}\"\n  name = \"my-{}\"\n  config = {}\n",
        info.kind,
        info.role,
        skeleton(schema, schema)
    );
    out.push_str(
        "  # credentials never go in config: secrets = { NAME = { from = \"env\", var = \"VAR\" } }\n  # (or from = \"file\", path = \"…\"), where the kind documents a secret\n",
    );
    out
}

fn explain_plan() -> String {
    let schema = rollback_core::load::plan_schema();
    let mut out = String::from("plan file (TOML or JSON): the fields of a plan\n\n");
    fields(&mut out, schema, schema, 1, &mut BTreeSet::new());
    out.push_str(
        "\na minimal plan:\n  name = \"web back\"\n  [[targets]]\n  kind = \"release-dir\"\n  name = \"web\"\n  config = { root = \"/srv/web\" }\n  [[stages]]\n  name = \"app\"\n  steps = [{ id = \"web-back\", op = \"rollback\", target = \"web\", to = \"previous\" }]\n",
    );
    out
}

/// Resolves a local `$ref` (`#/$defs/Name`).
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/")) {
        Some(path) => path.split('/').fold(root, |v, key| &v[key]),
        None => schema,
    }
}

/// The alternatives of a schema (`anyOf`/`oneOf`), or itself.
fn alternatives(schema: &Value) -> Vec<&Value> {
    match schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![schema],
    }
}

fn is_null(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

/// A type in a few words: `string`, `integer | null`, `array of string`, `"a" | "b"`.
fn type_name(root: &Value, schema: &Value) -> String {
    if let Some(name) = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()) {
        let target = resolve(root, schema);
        return if target.get("properties").is_some() { name.to_string() } else { type_name(root, target) };
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values.iter().map(Value::to_string).collect::<Vec<_>>().join(" | ");
    }
    if let Some(value) = schema.get("const") {
        return value.to_string();
    }
    if schema.get("anyOf").is_some() || schema.get("oneOf").is_some() {
        let names: Vec<String> =
            alternatives(schema).into_iter().filter(|s| !is_null(s)).map(|s| type_name(root, s)).collect();
        return dedup(names).join(" | ");
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => return "any".into(),
    };
    let names: Vec<String> = types
        .into_iter()
        .map(|t| match t {
            "array" => format!("array of {}", schema.get("items").map_or("any".into(), |i| type_name(root, i))),
            "object" => match schema.get("additionalProperties") {
                Some(v) if v.is_object() => format!("map of {}", type_name(root, v)),
                _ => "table".into(),
            },
            other => other.to_string(),
        })
        .collect();
    names.join(" | ")
}

fn dedup(names: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    names.into_iter().filter(|n| seen.insert(n.clone())).collect()
}

/// The struct a field's type names, if any (to list its fields below it).
fn nested<'a>(root: &'a Value, schema: &'a Value) -> Option<(&'a str, &'a Value)> {
    let item = schema.get("items").unwrap_or(schema);
    alternatives(item).into_iter().find_map(|alt| {
        let name = alt.get("$ref").and_then(Value::as_str)?.rsplit('/').next()?;
        let target = resolve(root, alt);
        target.get("properties").is_some().then_some((name, target))
    })
}

fn first_paragraph(text: &str) -> String {
    text.split("\n\n").next().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Lists an object schema's fields, indented by `depth`, expanding named structs once.
fn fields(out: &mut String, root: &Value, schema: &Value, depth: usize, seen: &mut BTreeSet<String>) {
    let schema = resolve(root, schema);
    let required: BTreeSet<&str> =
        schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let indent = "  ".repeat(depth);
    // Flattened structs (`allOf`) add their fields to these.
    for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        fields(out, root, part, depth, seen);
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    if properties.is_none_or(|p| p.is_empty()) && schema.get("allOf").is_none() && schema.get("oneOf").is_none() {
        let _ = writeln!(out, "{indent}(no fields)");
    }
    for (name, field) in properties.into_iter().flatten() {
        let mut line = format!("{indent}{name}: {}", type_name(root, field));
        if required.contains(name.as_str()) {
            line.push_str(", required");
        } else if let Some(default) = field.get("default").filter(|d| !d.is_null() && !d.is_object()) {
            let _ = write!(line, ", default {default}");
        } else {
            line.push_str(", optional");
        }
        let _ = writeln!(out, "{line}");
        let doc = field
            .get("description")
            .and_then(Value::as_str)
            .or_else(|| nested(root, field).and_then(|(_, t)| t.get("description")).and_then(Value::as_str));
        if let Some(doc) = doc {
            let _ = writeln!(out, "{indent}    {}", plain(&first_paragraph(doc)));
        }
        if let Some((type_name, target)) = nested(root, field)
            && depth < 4
            && seen.insert(type_name.to_string())
        {
            fields(out, root, target, depth + 2, seen);
            seen.remove(type_name);
        }
    }
    // A flattened enum (`oneOf` of objects): its variants and their fields.
    let variants = schema.get("oneOf").or_else(|| schema.get("anyOf")).and_then(Value::as_array);
    let variants: Vec<&Value> =
        variants.into_iter().flatten().map(|v| resolve(root, v)).filter(|v| v.get("properties").is_some()).collect();
    if !variants.is_empty() {
        let _ = writeln!(out, "{indent}and one of:");
        for variant in variants {
            if let Some(doc) = variant.get("description").and_then(Value::as_str) {
                let _ = writeln!(out, "{indent}  - {}", plain(&first_paragraph(doc)));
            }
            fields(out, root, variant, depth + 2, seen);
        }
    }
}

/// The required fields with placeholder values, as a TOML inline table.
fn skeleton(root: &Value, schema: &Value) -> String {
    let schema = resolve(root, schema);
    let required: Vec<&str> =
        schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let properties = schema.get("properties").and_then(Value::as_object);
    let mut parts: Vec<String> = required
        .iter()
        .filter_map(|name| {
            let field = properties?.get(*name)?;
            Some(format!("{name} = {}", placeholder(root, field)))
        })
        .collect();
    // A flattened enum: the first variant's required fields.
    let first = schema.get("oneOf").and_then(Value::as_array).and_then(|v| v.first()).map(|v| resolve(root, v));
    if let Some(inner) = first.filter(|v| v.get("properties").is_some()).map(|v| skeleton(root, v)) {
        let inner = inner.trim_start_matches('{').trim_end_matches('}').trim();
        if !inner.is_empty() {
            parts.push(inner.to_string());
        }
    }
    if parts.is_empty() { "{}".into() } else { format!("{{ {} }}", parts.join(", ")) }
}

fn placeholder(root: &Value, schema: &Value) -> String {
    let target = resolve(root, schema);
    if target.get("properties").is_some() {
        return skeleton(root, target);
    }
    if let Some(first) = target.get("enum").and_then(Value::as_array).and_then(|v| v.first()) {
        return first.to_string();
    }
    if let Some(value) = target.get("const") {
        return value.to_string();
    }
    let kind = target.get("type").and_then(|t| match t {
        Value::String(s) => Some(s.as_str()),
        Value::Array(list) => list.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    });
    match kind {
        Some("integer" | "number") => "0".into(),
        Some("boolean") => "false".into(),
        Some("array") => "[]".into(),
        Some("object") => "{}".into(),
        _ => "\"…\"".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_and_explained_from_its_schema() {
        let registry = registry();
        let kinds = registry.kinds();
        let text = list(&kinds);
        assert!(text.contains("release-dir") && text.contains("http"), "{text}");
        for k in &kinds {
            let explained = explain(&kinds, &k.kind).unwrap();
            assert!(explained.contains(&format!("{} ({}): ", k.kind, k.role)), "{explained}");
            assert!(explained.contains("config fields:") || k.schema.is_none(), "{explained}");
        }
        let redis = explain(&kinds, "redis-invalidate").unwrap();
        assert!(redis.contains("and one of:") && redis.contains("pattern: string, required"), "{redis}");
        assert!(redis.contains("config = { mode = \"flush\" }"), "{redis}");
        let release = explain(&kinds, "release-dir").unwrap();
        assert!(release.contains("root: string, required"), "{release}");
        assert!(release.contains("config = { root = \"…\""), "{release}");
    }

    #[test]
    fn an_unknown_kind_gets_the_closest_name() {
        let kinds = registry().kinds();
        let err = explain(&kinds, "release-dri").unwrap_err().to_string();
        assert!(err.contains("did you mean `release-dir`?"), "{err}");
    }

    #[test]
    fn the_plan_file_is_explained_too() {
        let text = explain(&[], "plan").unwrap();
        assert!(text.contains("stages:") && text.contains("budget"), "{text}");
    }
}
