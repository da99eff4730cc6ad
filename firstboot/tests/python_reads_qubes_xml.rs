//! qubes.xml read back by an independent parser: Python's xml.etree (the
//! ElementTree API qubes-core-admin's lxml implements). Checks the section
//! order, the graph, and that no value picked up layout whitespace (lxml
//! would hand core-admin "\n    " as a netvm name).

mod common;

use common::*;

const SCRIPT: &str = r#"
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
out = {"root": root.tag, "sections": [c.tag for c in root], "globals": {}, "domains": {}, "bad": []}
for p in root.find("properties"):
    out["globals"][p.get("name")] = p.text or ""
for el in root.iter():
    if el.tag in ("property", "feature", "label") and el.text is not None and el.text.strip() != el.text:
        out["bad"].append(el.tag + " " + str(el.attrib))
for d in root.find("domains"):
    props = {p.get("name"): (p.text or "") for p in d.find("properties")}
    name = props.get("name", "dom0")
    out["domains"][name] = {
        "id": d.get("id"), "class": d.get("class"), "children": [c.tag for c in d],
        "props": props,
        "features": {f.get("name"): (f.text or "") for f in d.find("features")},
        "volumes": [v.attrib for v in (d.find("volume-config") or [])],
    }
print(json.dumps(out))
"#;

#[test]
fn python_elementtree_reads_the_store() {
    let d = tempdir();
    let root = d.path();
    machine(root, "");
    ok(&firstboot(root, &[], &[]));
    let o = std::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(root.join("var/lib/qubes/qubes.xml"))
        .output()
        .expect("python3 is needed as an independent XML reader");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["root"], "qubes");
    assert_eq!(
        j["sections"],
        serde_json::json!(["labels", "pools", "properties", "domains"])
    );
    assert_eq!(
        j["bad"],
        serde_json::json!([]),
        "values with layout whitespace"
    );
    assert_eq!(j["globals"]["default_netvm"], "sys-firewall");
    assert_eq!(j["globals"]["default_dispvm"], "default-dvm");
    let dom = |n: &str| &j["domains"][n];
    assert_eq!(dom("dom0")["class"], "AdminVM");
    assert_eq!(dom("dom0")["id"], "domain-0");
    assert_eq!(
        dom("work")["children"],
        serde_json::json!(["properties", "features", "tags", "volume-config"])
    );
    assert_eq!(
        dom("sys-net")["children"],
        serde_json::json!(["properties", "features", "tags", "devices", "volume-config"])
    );
    assert_eq!(dom("sys-net")["props"]["netvm"], "");
    assert_eq!(dom("sys-net")["features"]["service.meminfo-writer"], "");
    assert_eq!(dom("vault")["props"]["netvm"], "");
    assert_eq!(dom("sys-firewall")["props"]["netvm"], "sys-net");
    assert_eq!(dom("sys-firewall")["id"], "domain-5");
    assert_eq!(dom("work")["props"]["label"], "blue");
    assert_eq!(
        dom("work")["volumes"][1]["vid"],
        "qubes_dom0/vm-work-private"
    );
    assert_eq!(dom("work")["volumes"][0]["snap_on_start"], "True");
}
