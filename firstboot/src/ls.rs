//! `firstboot ls` and `qube list`: the qubes in the style of `qvm-ls`
//! (NAME, CLASS, LABEL, TEMPLATE, NETVM, STATE; `-` for none), or JSON.

use std::collections::BTreeMap;

use crate::backend::QubeRow;
use crate::qubesxml::QubesXml;
use crate::xen::PowerState;

/// A row per qube of the store, sorted by name, its state from Xen's
/// domains (`states`, empty when Xen does not run): dom0 is always Running,
/// a qube Xen does not have is Halted.
pub fn rows(x: &QubesXml, states: &BTreeMap<String, PowerState>) -> Vec<QubeRow> {
    let mut rows: Vec<QubeRow> = x
        .domains
        .iter()
        .map(|d| {
            let name = d.name().to_string();
            let state = if d.class == "AdminVM" {
                PowerState::Running
            } else {
                states.get(&name).copied().unwrap_or(PowerState::Halted)
            };
            QubeRow {
                class: d.class.clone(),
                label: d.prop("label").unwrap_or_default().to_string(),
                template: d.prop("template").map(str::to_string),
                netvm: crate::offline::effective_netvm(x, d),
                state: state.as_str().into(),
                name,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

const HEADERS: [&str; 6] = ["NAME", "CLASS", "LABEL", "TEMPLATE", "NETVM", "STATE"];

fn cells(r: &QubeRow) -> [String; 6] {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    [
        r.name.clone(),
        r.class.clone(),
        r.label.clone(),
        dash(&r.template),
        dash(&r.netvm),
        r.state.clone(),
    ]
}

/// A column-aligned table, like qvm-ls prints.
pub fn table(rows: &[QubeRow]) -> String {
    let all: Vec<[String; 6]> = std::iter::once(HEADERS.map(str::to_string))
        .chain(rows.iter().map(cells))
        .collect();
    let mut widths = [0usize; 6];
    for r in &all {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in &all {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

/// JSON array of objects with lowercase keys.
pub fn json(rows: &[QubeRow]) -> String {
    serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into()) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned_with_dashes_for_none() {
        let rows = vec![
            QubeRow {
                name: "dom0".into(),
                class: "AdminVM".into(),
                label: "black".into(),
                template: None,
                netvm: None,
                state: "Running".into(),
            },
            QubeRow {
                name: "work".into(),
                class: "AppVM".into(),
                label: "blue".into(),
                template: Some("fedora-41-xfce".into()),
                netvm: Some("sys-firewall".into()),
                state: "Halted".into(),
            },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NAME  CLASS    LABEL  TEMPLATE        NETVM         STATE"
        );
        assert_eq!(
            lines[1],
            "dom0  AdminVM  black  -               -             Running"
        );
        assert_eq!(
            lines[2],
            "work  AppVM    blue   fedora-41-xfce  sys-firewall  Halted"
        );
        let j: serde_json::Value = serde_json::from_str(&json(&rows)).unwrap();
        assert_eq!(j[1]["netvm"], "sys-firewall");
        assert!(j[0]["template"].is_null());
    }
}
