use super::*;
use serde::{Deserialize, Serialize};

/// A sample file.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Sample {
    /// The name.
    name: String,
    /// Sizes.
    #[serde(default)]
    sizes: Vec<u32>,
    /// One entry per disk.
    #[serde(default)]
    disks: Vec<Disk>,
    /// Options.
    #[serde(default)]
    opts: Opts,
}

/// A disk.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Disk {
    /// Its path.
    path: String,
}

/// Options.
#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[allow(dead_code)]
struct Opts {
    /// Verbose output.
    verbose: bool,
}

impl Config for Sample {
    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.name.is_empty() {
            out.push(problem("name", "must not be empty"));
        }
        for (i, d) in self.disks.iter().enumerate() {
            if !d.path.starts_with("/dev/") {
                out.push(problem(format!("disks[{i}].path"), "give a /dev path"));
            }
        }
        if self.opts.verbose && self.sizes.is_empty() {
            out.push(problem("opts.verbose", "needs sizes"));
        }
        out
    }
    const AFTER_ERROR: &'static str = "\nfix it";
}

const TEXT: &str = "name = \"x\"\nsizes = [1]\n\n[[disks]]\npath = \"/dev/a\"\n\n[[disks]]\npath = \"b\"\n\n[opts]\nverbose = true\n";

#[test]
fn a_problem_names_its_key_and_line() {
    let e = parse::<Sample>(TEXT, "s.toml").unwrap_err();
    assert_eq!(
        e,
        ConfigError::Invalid {
            file: "s.toml".into(),
            line: 8,
            field: "disks[1].path".into(),
            message: "give a /dev path".into(),
            after: "\nfix it",
        }
    );
    assert_eq!(
        e.to_string(),
        "s.toml:8: `disks[1].path`: give a /dev path\nfix it"
    );
}

#[test]
fn lines_fall_back_to_the_nearest_parent() {
    assert_eq!(line_of(TEXT, "opts.verbose"), 11);
    assert_eq!(line_of(TEXT, "opts.missing"), 10);
    assert_eq!(line_of(TEXT, "nothing"), 1);
    assert_eq!(line_of(TEXT, "sizes[0]"), 2);
    assert_eq!(line_of("not toml [", "a"), 1);
}

#[test]
fn a_syntax_error_never_quotes_the_line() {
    let text = "name = \"x\"\npassphrase = \"hunter2-secret\"\n";
    let e = parse::<Sample>(text, "s.toml").unwrap_err().to_string();
    assert!(
        e.contains("line 2, column 1") && e.contains("passphrase"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "the secret was quoted: {e}");
}

#[test]
fn syntax_errors_carry_toml_s_line() {
    let e = parse::<Sample>("name = \"x\"\ncolour = 1\n", "s.toml").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("line 2") && text.contains("colour"), "{text}");
    assert!(text.ends_with("\nfix it"), "{text}");
}

#[test]
fn the_reference_lists_every_key_with_type_default_and_doc() {
    let rows = rows::<Sample>();
    let keys: Vec<_> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "disks",
            "disks[].path",
            "name",
            "opts",
            "opts.verbose",
            "sizes"
        ]
    );
    let row = |k: &str| rows.iter().find(|r| r.key == k).unwrap().clone();
    assert_eq!(row("name").default, "required");
    assert_eq!(row("name").doc, "The name.");
    assert_eq!(row("sizes").ty, "list of integers");
    assert_eq!(row("disks").ty, "list of tables");
    assert_eq!(row("opts").default, "see its keys");
    assert_eq!(row("opts.verbose").default, "`false`");
    assert_eq!(row("opts.verbose").ty, "boolean");
    assert!(reference_table::<Sample>().starts_with("| key | type | default | meaning |\n"));
}

#[test]
fn splice_replaces_between_markers_and_between_reads_it() {
    let doc = "a\n<!-- r:start -->\nold\n<!-- r:end -->\nb\n";
    let new = splice(doc, "r", "new\n").unwrap();
    assert_eq!(new, "a\n<!-- r:start -->\nnew\n<!-- r:end -->\nb\n");
    assert_eq!(between(&new, "r"), Some("new\n"));
    assert_eq!(splice(doc, "other", "x"), None);
}
