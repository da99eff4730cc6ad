//! The recipe, `iso.toml`: what an ISO is built from. The serde structs and
//! their doc comments are the single source of truth: parsing, validation
//! and the README's reference table ([`reference_markdown`]) all come from
//! them (the mkosi idea in shared/style.md).

use std::collections::BTreeMap;
use std::ops::Range;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An ISO recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// What is released.
    pub release: Release,
    /// Where the packages come from.
    pub debian: Debian,
    /// The root trees the ISO carries, by name: `live` (the installer system),
    /// `payload` (the installed dom0 system), `template` (the qube template).
    pub trees: BTreeMap<String, Tree>,
    /// How the medium boots.
    pub boot: Boot,
}

/// The release's identity and clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Release name: lowercase letters, digits and `-`; names the output
    /// `NAME-VERSION-amd64.iso`.
    pub name: String,
    /// Release version: digits, letters, `.`, `-`, `+`, `~`.
    pub version: String,
    /// Every timestamp in the build, in seconds since 1970 (the
    /// SOURCE_DATE_EPOCH of reproducible-builds.org). The environment's
    /// SOURCE_DATE_EPOCH overrides it.
    pub source_date_epoch: u64,
}

/// The Debian archive the trees are assembled from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Debian {
    /// Debian suite, e.g. `bookworm`.
    pub suite: String,
    /// Debian architecture; only `amd64` is supported.
    #[serde(default = "default_arch")]
    pub architecture: String,
    /// One-line apt sources (`deb URI SUITE COMPONENTS`) that
    /// `cargo xtask lock` resolves the package sets against. Builds never
    /// use them: they install exactly the locked files.
    pub sources: Vec<String>,
    /// Base URL of a Debian snapshot archive (snapshot.debian.org's layout:
    /// `BASE/ARCHIVE/YYYYMMDDTHHMMSSZ/`, ARCHIVE being the last path part of
    /// each source's URI). A pinned file the sources no longer serve is
    /// fetched from there at the lock's `resolved_at`. Point it at a mirror
    /// of your own; changing it does not invalidate the lock.
    #[serde(default = "default_snapshot")]
    pub snapshot: String,
}

fn default_arch() -> String {
    "amd64".into()
}

/// snapshot.debian.org, the archive of every file Debian ever published.
pub const DEFAULT_SNAPSHOT: &str = "http://snapshot.debian.org/archive";

fn default_snapshot() -> String {
    DEFAULT_SNAPSHOT.into()
}

/// One root tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// The base package set (mmdebstrap's variant): `essential`, `apt`,
    /// `required`, `minbase`, `important` or `standard`.
    #[serde(default = "default_variant")]
    pub variant: String,
    /// Packages installed on top of the variant (with their dependencies,
    /// without recommends).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Paths (globs relative to the tree's root) removed after assembly,
    /// e.g. documentation.
    #[serde(default)]
    pub remove: Vec<String>,
}

fn default_variant() -> String {
    "minbase".into()
}

/// Boot medium settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// ISO9660 volume label and the label the live system looks for:
    /// up to 32 characters of `A-Z`, `0-9` and `_`.
    pub volume_label: String,
    /// Extra kernel command line for every menu entry.
    #[serde(default)]
    pub cmdline: String,
    /// Seconds the boot menu waits before its default entry.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

fn default_timeout() -> u32 {
    5
}

const VARIANTS: &[&str] = &[
    "essential",
    "apt",
    "required",
    "minbase",
    "important",
    "standard",
];
/// Tree names the build knows what to do with.
pub const TREES: &[&str] = &["live", "payload", "template"];

/// A recipe that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}:{line}: `{field}`: {message}")]
    Invalid {
        file: String,
        line: usize,
        field: String,
        message: String,
    },
}

impl Recipe {
    /// Parses and validates a recipe; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, RecipeError> {
        let recipe: Recipe = toml::from_str(text).map_err(|e| RecipeError::Syntax {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        if let Some((path, message)) = recipe.problem() {
            let line = line_of(text, &path);
            return Err(RecipeError::Invalid {
                file: file.to_string(),
                line,
                field: path.join("."),
                message,
            });
        }
        Ok(recipe)
    }

    /// The first semantic problem: the field's path and what is wrong.
    fn problem(&self) -> Option<(Vec<String>, String)> {
        let at = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let r = &self.release;
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Some((
                at(&["release", "name"]),
                "use lowercase letters, digits and '-' only".into(),
            ));
        }
        if r.version.is_empty()
            || !r
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-+~".contains(c))
        {
            return Some((
                at(&["release", "version"]),
                "use letters, digits and . - + ~ only".into(),
            ));
        }
        if self.debian.architecture != "amd64" {
            return Some((
                at(&["debian", "architecture"]),
                format!(
                    "{:?} is not supported; use \"amd64\"",
                    self.debian.architecture
                ),
            ));
        }
        if self.debian.sources.is_empty() {
            return Some((
                at(&["debian", "sources"]),
                "give at least one apt source line, e.g. \"deb http://deb.debian.org/debian bookworm main\"".into(),
            ));
        }
        for s in &self.debian.sources {
            let words: Vec<_> = s.split_whitespace().collect();
            if words.len() < 3 || words[0] != "deb" {
                return Some((
                    at(&["debian", "sources"]),
                    format!("{s:?} is not a one-line apt source (`deb URI SUITE [COMPONENTS]`)"),
                ));
            }
        }
        let snap = self.debian.snapshot.trim_end_matches('/');
        if !(snap.starts_with("http://")
            || snap.starts_with("https://")
            || snap.starts_with("file:/"))
            || snap.contains(char::is_whitespace)
        {
            return Some((
                at(&["debian", "snapshot"]),
                format!("{snap:?} is not an http(s):// or file:/ URL, e.g. \"{DEFAULT_SNAPSHOT}\""),
            ));
        }
        for (name, tree) in &self.trees {
            if !TREES.contains(&name.as_str()) {
                return Some((
                    at(&["trees", name]),
                    format!("unknown tree; the trees are {}", TREES.join(", ")),
                ));
            }
            if !VARIANTS.contains(&tree.variant.as_str()) {
                return Some((
                    at(&["trees", name, "variant"]),
                    format!("{:?}: use one of {}", tree.variant, VARIANTS.join(", ")),
                ));
            }
            for p in &tree.packages {
                let ok = p.len() >= 2
                    && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
                if !ok {
                    return Some((
                        at(&["trees", name, "packages"]),
                        format!("{p:?} is not a Debian package name"),
                    ));
                }
            }
            for g in &tree.remove {
                if g.starts_with('/') || g.split('/').any(|c| c == "..") || g.is_empty() {
                    return Some((
                        at(&["trees", name, "remove"]),
                        format!("{g:?}: give a relative path without '..'"),
                    ));
                }
            }
        }
        if !self.trees.contains_key("live") {
            return Some((at(&["trees"]), "a [trees.live] table is required".into()));
        }
        let label = &self.boot.volume_label;
        if label.is_empty()
            || label.len() > 32
            || !label
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            return Some((
                at(&["boot", "volume_label"]),
                "use 1 to 32 characters of A-Z, 0-9 and _".into(),
            ));
        }
        if self.boot.cmdline.contains('\n') {
            return Some((at(&["boot", "cmdline"]), "must be one line".into()));
        }
        None
    }

    /// The output file name, `NAME-VERSION-amd64.iso`.
    pub fn iso_name(&self) -> String {
        format!(
            "{}-{}-{}.iso",
            self.release.name, self.release.version, self.debian.architecture
        )
    }

    /// The recipe in canonical TOML (what its hash is taken over).
    pub fn canonical(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// 1-based line of the item at `path` in `text` (1 when not found).
fn line_of(text: &str, path: &[String]) -> usize {
    let span = span_of(text, path).unwrap_or(0..0);
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

fn span_of(text: &str, path: &[String]) -> Option<Range<usize>> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    let mut best = None;
    for key in path {
        let table = item.as_table_like()?;
        let (k, next) = table.get_key_value(key)?;
        best = k.span().or(best);
        item = next;
    }
    best
}

/// The recipe reference, a Markdown table derived from the structs' doc
/// comments (kept in the README; a test checks it is current).
pub fn reference_markdown() -> String {
    let schema = serde_json::to_value(schemars::schema_for!(Recipe)).unwrap_or_default();
    let mut rows = Vec::new();
    walk(&schema, &schema, "", &mut rows);
    let mut out = String::from("| key | type | default | meaning |\n|---|---|---|---|\n");
    for (key, ty, default, doc) in rows {
        out.push_str(&format!("| `{key}` | {ty} | {default} | {doc} |\n"));
    }
    out
}

fn resolve<'a>(root: &'a serde_json::Value, v: &'a serde_json::Value) -> &'a serde_json::Value {
    if let Some(r) = v.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or_default();
        if let Some(def) = root.get("$defs").and_then(|d| d.get(name)) {
            return def;
        }
    }
    v
}

fn walk(
    root: &serde_json::Value,
    node: &serde_json::Value,
    prefix: &str,
    rows: &mut Vec<(String, String, String, String)>,
) {
    let node = resolve(root, node);
    let Some(props) = node.get("properties").and_then(|p| p.as_object()) else {
        return;
    };
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
        let ty = match target.get("type").and_then(|t| t.as_str()) {
            Some("array") => "list of strings".to_string(),
            Some("object")
                if target
                    .get("additionalProperties")
                    .is_some_and(|a| a.is_object()) =>
            {
                "table of tables".to_string()
            }
            Some("object") => "table".to_string(),
            Some(t) => t.to_string(),
            None => "table".to_string(),
        };
        let default = prop
            .get("default")
            .map(|d| format!("`{d}`"))
            .unwrap_or_else(|| "required".into());
        rows.push((key.clone(), ty, default, doc));
        if let Some(extra) = target.get("additionalProperties")
            && extra.is_object()
        {
            walk(root, extra, &format!("{key}.NAME"), rows);
        } else {
            walk(root, target, &key, rows);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[release]
name = "bulkhead"
version = "0.1.0"
source_date_epoch = 1700000000

[debian]
suite = "bookworm"
sources = ["deb http://deb.debian.org/debian bookworm main"]

[trees.live]
packages = ["busybox-static"]

[boot]
volume_label = "BULKHEAD"
"#;

    #[test]
    fn good_recipe_parses_with_defaults() {
        let r = Recipe::parse(GOOD, "iso.toml").unwrap();
        assert_eq!(r.trees["live"].variant, "minbase");
        assert_eq!(r.boot.timeout_seconds, 5);
        assert_eq!(r.iso_name(), "bulkhead-0.1.0-amd64.iso");
    }

    #[test]
    fn unknown_field_is_a_syntax_error_with_line() {
        let bad = GOOD.replace("[boot]\n", "[boot]\ncolour = \"red\"\n");
        let err = Recipe::parse(&bad, "iso.toml").unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
        assert!(err.contains("line 15"), "{err}");
    }

    #[test]
    fn invalid_values_name_field_and_line() {
        let cases = [
            (
                GOOD.replace("\"bulkhead\"", "\"Bulk Head\""),
                "release.name",
                3,
            ),
            (
                GOOD.replace("volume_label = \"BULKHEAD\"", "volume_label = \"bulkhead\""),
                "boot.volume_label",
                15,
            ),
            (
                GOOD.replace("[\"busybox-static\"]", "[\"Busybox\"]"),
                "trees.live.packages",
                12,
            ),
            (
                GOOD.replace("[trees.live]", "[trees.desktop]"),
                "trees.desktop",
                11,
            ),
            (
                GOOD.replace("sources = [\"deb ", "sources = [\"dub "),
                "debian.sources",
                9,
            ),
        ];
        for (text, field, line) in cases {
            match Recipe::parse(&text, "iso.toml") {
                Err(RecipeError::Invalid {
                    field: f, line: l, ..
                }) => {
                    assert_eq!((f.as_str(), l), (field, line), "{text}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn reference_lists_every_field_with_its_doc() {
        let md = reference_markdown();
        for key in [
            "release.source_date_epoch",
            "debian.sources",
            "trees.NAME.variant",
            "trees.NAME.packages",
            "boot.volume_label",
            "boot.timeout_seconds",
        ] {
            assert!(md.contains(&format!("`{key}`")), "{key} missing:\n{md}");
        }
        assert!(md.contains("SOURCE_DATE_EPOCH"), "{md}");
    }
}
