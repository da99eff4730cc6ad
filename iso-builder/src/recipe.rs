//! The recipe, `iso.toml`: what an ISO is built from. The serde structs and
//! their doc comments are the single source of truth: parsing, validation
//! and the README's reference table ([`reference_markdown`]) all come from
//! them (the mkosi idea in shared/style.md).

use std::collections::BTreeMap;

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

/// A recipe that could not be read: the key and line of the first problem.
pub type RecipeError = confdoc::ConfigError;

use confdoc::{Problem, problem};

impl Recipe {
    /// Parses and validates a recipe; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, RecipeError> {
        confdoc::parse(text, file)
    }

    /// Every semantic problem, in file order (empty: valid).
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let r = &self.release;
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            out.push(problem(
                "release.name",
                "use lowercase letters, digits and '-' only",
            ));
        }
        if r.version.is_empty()
            || !r
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-+~".contains(c))
        {
            out.push(problem(
                "release.version",
                "use letters, digits and . - + ~ only",
            ));
        }
        if self.debian.architecture != "amd64" {
            out.push(problem(
                "debian.architecture",
                format!(
                    "{:?} is not supported; use \"amd64\"",
                    self.debian.architecture
                ),
            ));
        }
        if self.debian.sources.is_empty() {
            out.push(problem("debian.sources", "give at least one apt source line, e.g. \"deb http://deb.debian.org/debian bookworm main\""));
        }
        for s in &self.debian.sources {
            let words: Vec<_> = s.split_whitespace().collect();
            if words.len() < 3 || words[0] != "deb" {
                out.push(problem(
                    "debian.sources",
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
            out.push(problem(
                "debian.snapshot",
                format!("{snap:?} is not an http(s):// or file:/ URL, e.g. \"{DEFAULT_SNAPSHOT}\""),
            ));
        }
        for (name, tree) in &self.trees {
            if !TREES.contains(&name.as_str()) {
                out.push(problem(
                    format!("trees.{name}"),
                    format!("unknown tree; the trees are {}", TREES.join(", ")),
                ));
            }
            if !VARIANTS.contains(&tree.variant.as_str()) {
                out.push(problem(
                    format!("trees.{name}.variant"),
                    format!("{:?}: use one of {}", tree.variant, VARIANTS.join(", ")),
                ));
            }
            for p in &tree.packages {
                let ok = p.len() >= 2
                    && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
                if !ok {
                    out.push(problem(
                        format!("trees.{name}.packages"),
                        format!("{p:?} is not a Debian package name"),
                    ));
                }
            }
            for g in &tree.remove {
                if g.starts_with('/') || g.split('/').any(|c| c == "..") || g.is_empty() {
                    out.push(problem(
                        format!("trees.{name}.remove"),
                        format!("{g:?}: give a relative path without '..'"),
                    ));
                }
            }
        }
        if !self.trees.contains_key("live") {
            out.push(problem("trees", "a [trees.live] table is required"));
        }
        let label = &self.boot.volume_label;
        if label.is_empty()
            || label.len() > 32
            || !label
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            out.push(problem(
                "boot.volume_label",
                "use 1 to 32 characters of A-Z, 0-9 and _",
            ));
        }
        if self.boot.cmdline.contains('\n') {
            out.push(problem("boot.cmdline", "must be one line"));
        }
        out
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

/// The recipe reference, a Markdown table derived from the structs' doc
/// comments (kept in the README; a test checks it is current).
pub fn reference_markdown() -> String {
    confdoc::reference_table::<Recipe>()
}

impl confdoc::Config for Recipe {
    fn problems(&self) -> Vec<Problem> {
        Recipe::problems(self)
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
