//! One mechanism for our three settings files (the ISO recipe, the
//! installer's answer file, firstboot.toml): parse with serde, validate with
//! one [`Config::problems`] shape, report a problem as `file:line: `key`:
//! message` (the line found with toml_edit's spans), and derive the Markdown
//! reference from the structs' doc comments through schemars' JSON schema.
//!
//! Written here because no crate joins serde's errors, semantic validation
//! with line numbers, and doc-comment references; the parts are well-kept
//! crates (toml, toml_edit, schemars).

use std::ops::Range;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

/// One problem: the dotted key (`a.b`, `list[2].c`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

/// A [`Problem`] at `field`.
pub fn problem(field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        field: field.into(),
        message: message.into(),
    }
}

/// A settings file: its struct, its rules, what to tell the reader after
/// an error.
pub trait Config: DeserializeOwned + JsonSchema {
    /// Every problem, in file order (empty: valid).
    fn problems(&self) -> Vec<Problem>;
    /// Appended to every error (e.g. that nothing was written).
    const AFTER_ERROR: &'static str = "";
}

/// A settings file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, an unknown key, a wrong type: the line and column and
    /// toml's reason, never the text of the line (it may hold a secret
    /// someone put there by mistake).
    #[error("{file}: {message}{after}")]
    Syntax {
        file: String,
        message: String,
        after: &'static str,
    },
    /// Valid TOML that breaks a rule.
    #[error("{file}:{line}: `{field}`: {message}{after}")]
    Invalid {
        file: String,
        line: usize,
        field: String,
        message: String,
        after: &'static str,
    },
}

/// Parses and validates `text`; `file` names it in errors. The first
/// problem is the error.
pub fn parse<T: Config>(text: &str, file: &str) -> Result<T, ConfigError> {
    let value: T = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        file: file.to_string(),
        message: syntax_message(text, &e),
        after: T::AFTER_ERROR,
    })?;
    if let Some(p) = value.problems().into_iter().next() {
        return Err(ConfigError::Invalid {
            file: file.to_string(),
            line: line_of(text, &p.field),
            field: p.field,
            message: p.message,
            after: T::AFTER_ERROR,
        });
    }
    Ok(value)
}

/// `line L, column C: reason` of a toml error, without quoting the line.
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let reason = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {reason}")
        }
        None => reason.to_string(),
    }
}

/// 1-based line of the dotted `field` in `text`: its nearest present parent
/// when the key is absent, 1 when nothing is found. `name[i]` indexes an
/// array (of tables or values).
pub fn line_of(text: &str, field: &str) -> usize {
    let span = span_of(text, field).unwrap_or(0..0);
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

fn span_of(text: &str, field: &str) -> Option<Range<usize>> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut table: Option<&dyn toml_edit::TableLike> = Some(doc.as_table());
    let mut best = None;
    for part in field.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some((k, item)) = table.and_then(|t| t.get_key_value(key)) else {
            break;
        };
        best = k.span().or(best);
        table = item.as_table_like();
        if let Some(i) = index {
            if let Some(t) = item.as_array_of_tables().and_then(|a| a.get(i)) {
                best = t.span().or(best);
                table = Some(t);
            } else if let Some(v) = item.as_array().and_then(|a| a.get(i)) {
                best = v.span().or(best);
                table = v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike);
            } else {
                table = None;
            }
        }
    }
    best
}

/// One row of a reference: the dotted key, its type, default and meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    pub ty: String,
    pub default: String,
    pub doc: String,
}

/// The reference of `T`: every key, depth first, keys sorted.
pub fn rows<T: JsonSchema>() -> Vec<Row> {
    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    let mut rows = Vec::new();
    walk(&schema, &schema, "", &mut rows);
    rows
}

/// The reference of `T` as a Markdown table.
pub fn reference_table<T: JsonSchema>() -> String {
    let mut out = String::from("| key | type | default | meaning |\n|---|---|---|---|\n");
    for r in rows::<T>() {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            r.key, r.ty, r.default, r.doc
        ));
    }
    out
}

/// Replaces what lies between `<!-- NAME:start -->` and `<!-- NAME:end -->`
/// in `doc` with `body`; `None` when the markers are missing. Every
/// generated reference in the repository uses these markers.
pub fn splice(doc: &str, name: &str, body: &str) -> Option<String> {
    let (start, end) = markers(name);
    let a = doc.find(&start)? + start.len();
    let b = a + doc[a..].find(&end)?;
    Some(format!("{}\n{}{}", &doc[..a], body, &doc[b..]))
}

/// What lies between the markers of `name` (without the newline after the
/// start marker).
pub fn between<'a>(doc: &'a str, name: &str) -> Option<&'a str> {
    let (start, end) = markers(name);
    let a = doc.find(&start)? + start.len();
    let b = a + doc[a..].find(&end)?;
    Some(doc[a..b].strip_prefix('\n').unwrap_or(&doc[a..b]))
}

fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- {name}:start -->"),
        format!("<!-- {name}:end -->"),
    )
}

fn resolve<'a>(root: &'a serde_json::Value, node: &'a serde_json::Value) -> &'a serde_json::Value {
    let r = node.get("$ref").or_else(|| {
        node.get("allOf")
            .and_then(|a| a.get(0))
            .and_then(|a| a.get("$ref"))
    });
    match r
        .and_then(|r| r.as_str())
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => root.get("$defs").and_then(|d| d.get(name)).unwrap_or(node),
        None => node,
    }
}

fn type_name(root: &serde_json::Value, node: &serde_json::Value) -> String {
    let n = resolve(root, node);
    if let Some(e) = n.get("enum").or_else(|| n.get("oneOf")) {
        let vals: Vec<String> = e
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.get("const").and_then(|c| c.as_str()).map(str::to_string))
            })
            .map(|v| format!("`{v}`"))
            .collect();
        return vals.join(" / ");
    }
    let simple = |t: &str| match t {
        "array" => {
            let item = n.get("items").map(|i| resolve(root, i));
            match item {
                Some(i) if i.get("properties").is_some() => "list of tables".to_string(),
                Some(i) => match i.get("type").and_then(|t| t.as_str()) {
                    Some("string") | None => "list of strings".to_string(),
                    Some(t) => format!("list of {t}s"),
                },
                None => "list".to_string(),
            }
        }
        "object" if n.get("additionalProperties").is_some_and(|a| a.is_object()) => {
            "table of tables".to_string()
        }
        "object" => "table".to_string(),
        t => t.to_string(),
    };
    match n.get("type") {
        Some(serde_json::Value::String(t)) => simple(t),
        Some(serde_json::Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str())
            .filter(|t| *t != "null")
            .map(simple)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "table".to_string(),
    }
}

fn walk(root: &serde_json::Value, node: &serde_json::Value, prefix: &str, rows: &mut Vec<Row>) {
    let node = resolve(root, node);
    let Some(props) = node.get("properties").and_then(|p| p.as_object()) else {
        return;
    };
    let required: Vec<&str> = node
        .get("required")
        .and_then(|r| r.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    for (name, prop) in props {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let target = resolve(root, prop);
        let doc = prop
            .get("description")
            .or_else(|| target.get("description"))
            .and_then(|d| d.as_str())
            .unwrap_or("")
            .replace('\n', " ");
        let is_table = target.get("properties").is_some();
        let items = target
            .get("items")
            .map(|i| resolve(root, i))
            .filter(|i| i.get("properties").is_some());
        let extra = target.get("additionalProperties").filter(|a| a.is_object());
        let default = match prop.get("default") {
            Some(serde_json::Value::Null) => "unset".to_string(),
            Some(_) if is_table || items.is_some() || extra.is_some() => "see its keys".to_string(),
            Some(d) => format!("`{d}`"),
            None if required.contains(&name.as_str()) => "required".to_string(),
            None => "unset".to_string(),
        };
        rows.push(Row {
            key: key.clone(),
            ty: type_name(root, prop),
            default,
            doc,
        });
        if let Some(i) = items {
            walk(root, i, &format!("{key}[]"), rows);
        } else if let Some(e) = extra {
            walk(root, e, &format!("{key}.NAME"), rows);
        } else {
            walk(root, target, &key, rows);
        }
    }
}

#[cfg(test)]
mod tests;
