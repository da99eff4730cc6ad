//! qubes.xml in qubes-core-admin's schema, written and read with quick-xml.
//!
//! Layout (qubes/app.py `__xml__`, qubes/vm/*.py `__xml__`): root `<qubes>`
//! with `<labels>`, `<pools>`, `<properties>`, `<domains>` in that order; each
//! `<domain id="domain-QID" class="...">` holds `<properties>`, `<features>`,
//! `<tags>`, one `<devices class="...">` per device class and
//! `<volume-config>`. Values are text (`True`/`False` for booleans, an empty
//! element for "none"); labels are saved by name. Output is deterministic:
//! domains in qid order, properties qid and name first then by name.

use std::io::Cursor;
use std::path::Path;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::reader::Reader;

use crate::Error;
use crate::model::Label;

/// Attribute list in document order.
pub type Attrs = Vec<(String, String)>;

/// The whole store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QubesXml {
    pub labels: Vec<XLabel>,
    pub pools: Vec<Attrs>,
    pub properties: Vec<Property>,
    pub domains: Vec<Domain>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLabel {
    pub id: String,
    pub color: String,
    pub name: String,
}

/// `<property name="..." [ref="..."]>text</property>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    pub reference: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Domain {
    pub id: String,
    pub class: String,
    pub properties: Vec<Property>,
    pub features: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub devices: Vec<Devices>,
    pub volumes: Vec<Attrs>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Devices {
    pub class: String,
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub attrs: Attrs,
    pub options: Vec<(String, String)>,
}

fn attr<'a>(attrs: &'a Attrs, key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Sorts properties as core-admin lists them: qid, name, then by name.
fn sort_props(props: &mut [Property]) {
    props.sort_by_key(|p| {
        (
            match p.name.as_str() {
                "qid" => 0,
                "name" => 1,
                _ => 2,
            },
            p.name.clone(),
        )
    });
}

fn set_prop(props: &mut Vec<Property>, name: &str, text: &str) {
    match props.iter_mut().find(|p| p.name == name) {
        Some(p) => {
            p.text = text.into();
            p.reference = None;
        }
        None => props.push(Property {
            name: name.into(),
            reference: None,
            text: text.into(),
        }),
    }
    sort_props(props);
}

impl Domain {
    pub fn prop(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.text.as_str())
    }

    pub fn set_prop(&mut self, name: &str, text: &str) {
        set_prop(&mut self.properties, name, text);
    }

    pub fn name(&self) -> &str {
        self.prop("name")
            .unwrap_or(if self.class == "AdminVM" { "dom0" } else { "" })
    }

    pub fn qid(&self) -> Option<u32> {
        match self.prop("qid") {
            Some(q) => q.parse().ok(),
            None if self.class == "AdminVM" => Some(0),
            None => self.id.strip_prefix("domain-").and_then(|q| q.parse().ok()),
        }
    }

    pub fn volume(&self, name: &str) -> Option<&Attrs> {
        self.volumes.iter().find(|v| attr(v, "name") == Some(name))
    }

    pub fn volume_attr(&self, volume: &str, key: &str) -> Option<&str> {
        self.volume(volume).and_then(|v| attr(v, key))
    }
}

impl QubesXml {
    /// The store as a fresh qubes-core-dom0 creates it: the eight labels, the
    /// file pool on /var/lib/qubes, the kernel pool, and dom0.
    pub fn initial() -> QubesXml {
        let labels = Label::ALL
            .iter()
            .map(|l| XLabel {
                id: format!("label-{}", l.index()),
                color: l.color().into(),
                name: l.name().into(),
            })
            .collect();
        let a = |v: &[(&str, &str)]| -> Attrs {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut x = QubesXml {
            labels,
            pools: vec![
                a(&[
                    ("name", "varlibqubes"),
                    ("dir_path", names::QUBES_DIR_ABS),
                    ("driver", "file"),
                    ("revisions_to_keep", "1"),
                ]),
                a(&[
                    ("name", "linux-kernel"),
                    ("dir_path", names::VM_KERNELS_ABS),
                    ("driver", "linux-kernel"),
                ]),
            ],
            properties: Vec::new(),
            domains: vec![Domain {
                id: "domain-0".into(),
                class: "AdminVM".into(),
                properties: vec![Property {
                    name: "label".into(),
                    reference: None,
                    text: "black".into(),
                }],
                ..Domain::default()
            }],
        };
        x.set_global("default_pool_kernel", "linux-kernel");
        x
    }

    pub fn global(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.text.as_str())
    }

    pub fn set_global(&mut self, name: &str, value: &str) {
        set_prop(&mut self.properties, name, value);
    }

    pub fn pool(&self, name: &str) -> Option<&Attrs> {
        self.pools.iter().find(|p| attr(p, "name") == Some(name))
    }

    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.name() == name)
    }

    /// Lowest unused qid, as `get_new_unused_qid` picks it.
    pub fn next_qid(&self) -> u32 {
        let used: Vec<u32> = self.domains.iter().filter_map(Domain::qid).collect();
        (1..).find(|q| !used.contains(q)).unwrap_or(1)
    }

    /// Adds a domain keeping qid order.
    pub fn add_domain(&mut self, d: Domain) {
        self.domains.push(d);
        self.domains.sort_by_key(|d| d.qid().unwrap_or(u32::MAX));
    }

    /// Serialises the store (UTF-8, two-space indent, like lxml's pretty print).
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new_with_indent(Cursor::new(Vec::new()), b' ', 2);
        let e = |e: std::io::Error| Error::Xml(format!("writing qubes.xml: {e}"));
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
            .map_err(e)?;
        w.write_event(Event::Start(BytesStart::new("qubes")))
            .map_err(e)?;

        container(&mut w, "labels", &self.labels, |w, l| {
            text_el(w, "label", &[("id", &l.id), ("color", &l.color)], &l.name)
        })?;
        container(&mut w, "pools", &self.pools, |w, p| empty_el(w, "pool", p))?;
        props(&mut w, &self.properties)?;
        container(&mut w, "domains", &self.domains, |w, d| {
            let start = BytesStart::new("domain")
                .with_attributes([("id", d.id.as_str()), ("class", d.class.as_str())]);
            w.write_event(Event::Start(start))?;
            props(w, &d.properties).map_err(std::io::Error::other)?;
            container(w, "features", &d.features, |w, (k, v)| {
                text_el(w, "feature", &[("name", k)], v)
            })
            .map_err(std::io::Error::other)?;
            container(w, "tags", &d.tags, |w, t| {
                empty_el(w, "tag", &vec![("name".into(), t.clone())])
            })
            .map_err(std::io::Error::other)?;
            for devs in &d.devices {
                let start =
                    BytesStart::new("devices").with_attributes([("class", devs.class.as_str())]);
                if devs.devices.is_empty() {
                    w.write_event(Event::Empty(start))?;
                    continue;
                }
                w.write_event(Event::Start(start))?;
                for dev in &devs.devices {
                    let start = BytesStart::new("device")
                        .with_attributes(dev.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                    if dev.options.is_empty() {
                        w.write_event(Event::Empty(start))?;
                    } else {
                        w.write_event(Event::Start(start))?;
                        for (k, v) in &dev.options {
                            text_el(w, "option", &[("name", k)], v)?;
                        }
                        w.write_event(Event::End(BytesEnd::new("device")))?;
                    }
                }
                w.write_event(Event::End(BytesEnd::new("devices")))?;
            }
            if !d.volumes.is_empty() || d.class != "AdminVM" {
                container(w, "volume-config", &d.volumes, |w, v| {
                    empty_el(w, "volume", v)
                })
                .map_err(std::io::Error::other)?;
            }
            w.write_event(Event::End(BytesEnd::new("domain")))?;
            Ok(())
        })?;
        w.write_event(Event::End(BytesEnd::new("qubes")))
            .map_err(e)?;
        let mut out = w.into_inner().into_inner();
        out.push(b'\n');
        Ok(out)
    }

    /// Parses a qubes.xml (ours or core-admin's).
    pub fn parse(text: &str) -> Result<QubesXml, Error> {
        let root = parse_tree(text)?;
        if root.name != "qubes" {
            return Err(Error::Xml(format!(
                "root element is <{}>, expected <qubes>",
                root.name
            )));
        }
        let mut x = QubesXml::default();
        for sec in &root.children {
            match sec.name.as_str() {
                "labels" => {
                    for l in sec.kids("label") {
                        x.labels.push(XLabel {
                            id: l.get("id").unwrap_or_default().into(),
                            color: l.get("color").unwrap_or_default().into(),
                            name: l.text.clone(),
                        })
                    }
                }
                "pools" => x.pools = sec.kids("pool").map(|p| p.attrs.clone()).collect(),
                "properties" => x.properties = read_props(sec),
                "domains" => {
                    for d in sec.kids("domain") {
                        x.domains.push(read_domain(d));
                    }
                }
                _ => {}
            }
        }
        Ok(x)
    }

    pub fn load(path: &Path) -> Result<QubesXml, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        QubesXml::parse(&text).map_err(|e| match e {
            Error::Xml(m) => Error::Xml(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Writes atomically (temporary file, fsync, rename), as core-admin's
    /// `replace_file` does, so a crash leaves the old or the new file.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        crate::util::write_atomic(path, &self.to_bytes()?, 0o660)
    }
}

type W = Writer<Cursor<Vec<u8>>>;

fn container<T>(
    w: &mut W,
    name: &str,
    items: &[T],
    mut f: impl FnMut(&mut W, &T) -> std::io::Result<()>,
) -> Result<(), Error> {
    let e = |e: std::io::Error| Error::Xml(format!("writing <{name}>: {e}"));
    if items.is_empty() {
        w.write_event(Event::Empty(BytesStart::new(name)))
            .map_err(e)?;
        return Ok(());
    }
    w.write_event(Event::Start(BytesStart::new(name)))
        .map_err(e)?;
    for i in items {
        f(w, i).map_err(e)?;
    }
    w.write_event(Event::End(BytesEnd::new(name))).map_err(e)?;
    Ok(())
}

fn props(w: &mut W, props: &[Property]) -> Result<(), Error> {
    container(w, "properties", props, |w, p| match &p.reference {
        Some(r) => empty_el(
            w,
            "property",
            &vec![("name".into(), p.name.clone()), ("ref".into(), r.clone())],
        ),
        None => text_el(w, "property", &[("name", &p.name)], &p.text),
    })
}

fn text_el(w: &mut W, name: &str, attrs: &[(&str, &String)], text: &str) -> std::io::Result<()> {
    let start = BytesStart::new(name).with_attributes(attrs.iter().map(|(k, v)| (*k, v.as_str())));
    w.write_event(Event::Start(start))?;
    // Always a text event, even empty: the indenting writer would otherwise
    // put a line break inside, which lxml reads back as the value.
    w.write_event(Event::Text(BytesText::new(text)))?;
    w.write_event(Event::End(BytesEnd::new(name)))
}

fn empty_el(w: &mut W, name: &str, attrs: &Attrs) -> std::io::Result<()> {
    let start =
        BytesStart::new(name).with_attributes(attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    w.write_event(Event::Empty(start))
}

fn read_props(sec: &Node) -> Vec<Property> {
    sec.kids("property")
        .map(|p| Property {
            name: p.get("name").unwrap_or_default().into(),
            reference: p.get("ref").map(str::to_string),
            text: p.text.clone(),
        })
        .collect()
}

fn read_domain(d: &Node) -> Domain {
    let mut dom = Domain {
        id: d.get("id").unwrap_or_default().into(),
        class: d.get("class").unwrap_or_default().into(),
        ..Domain::default()
    };
    for c in &d.children {
        match c.name.as_str() {
            "properties" => dom.properties = read_props(c),
            "features" => {
                dom.features = c
                    .kids("feature")
                    .map(|f| (f.get("name").unwrap_or_default().into(), f.text.clone()))
                    .collect()
            }
            "tags" => {
                dom.tags = c
                    .kids("tag")
                    .map(|t| t.get("name").unwrap_or_default().into())
                    .collect()
            }
            "devices" => dom.devices.push(Devices {
                class: c.get("class").unwrap_or_default().into(),
                devices: c
                    .kids("device")
                    .map(|dev| Device {
                        attrs: dev.attrs.clone(),
                        options: dev
                            .kids("option")
                            .map(|o| (o.get("name").unwrap_or_default().into(), o.text.clone()))
                            .collect(),
                    })
                    .collect(),
            }),
            "volume-config" => dom.volumes = c.kids("volume").map(|v| v.attrs.clone()).collect(),
            _ => {}
        }
    }
    dom
}

/// A minimal element tree; quick-xml does the tokenising and unescaping.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Attrs,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn get(&self, key: &str) -> Option<&str> {
        attr(&self.attrs, key)
    }
    fn kids<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn parse_tree(text: &str) -> Result<Node, Error> {
    let mut r = Reader::from_str(text);
    let err =
        |r: &Reader<&[u8]>, m: String| Error::Xml(format!("at byte {}: {m}", r.buffer_position()));
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let node = |r: &Reader<&[u8]>, s: &BytesStart<'_>| -> Result<Node, Error> {
        let mut n = Node {
            name: String::from_utf8_lossy(s.name().as_ref()).into_owned(),
            ..Node::default()
        };
        for a in s.attributes() {
            let a = a.map_err(|e| err(r, e.to_string()))?;
            let v = a.unescape_value().map_err(|e| err(r, e.to_string()))?;
            n.attrs.push((
                String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                v.into_owned(),
            ));
        }
        Ok(n)
    };
    loop {
        let ev = r.read_event().map_err(|e| err(&r, e.to_string()))?;
        match ev {
            Event::Start(s) => stack.push(node(&r, &s)?),
            Event::Empty(s) => {
                let n = node(&r, &s)?;
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None if root.is_none() => root = Some(n),
                    None => return Err(err(&r, "more than one root element".into())),
                }
            }
            Event::End(_) => {
                let Some(mut n) = stack.pop() else {
                    return Err(err(&r, "unbalanced end tag".into()));
                };
                if !n.children.is_empty() {
                    n.text.clear();
                }
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None if root.is_none() => root = Some(n),
                    None => return Err(err(&r, "more than one root element".into())),
                }
            }
            Event::Text(t) => {
                if let Some(n) = stack.last_mut() {
                    let t = t.unescape().map_err(|e| err(&r, e.to_string()))?;
                    n.text.push_str(&t);
                }
            }
            Event::CData(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(err(
            &r,
            format!("<{}> is not closed", stack[stack.len() - 1].name),
        ));
    }
    let mut root = root.ok_or_else(|| Error::Xml("no root element".into()))?;
    trim_ws(&mut root);
    Ok(root)
}

/// Whitespace-only text (indentation) is not content.
fn trim_ws(n: &mut Node) {
    if n.text.trim().is_empty() {
        n.text.clear();
    }
    n.children.iter_mut().for_each(trim_ws);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_store_roundtrips_and_has_sections_in_order() {
        let x = QubesXml::initial();
        let bytes = x.to_bytes().unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let pos = |s: &str| text.find(s).unwrap();
        assert!(pos("<labels>") < pos("<pools>"));
        assert!(pos("<pools>") < pos("<properties>"));
        assert!(pos("<properties>") < pos("<domains>"));
        assert!(
            text.contains(r#"<label id="label-6" color="0x3465a4">blue</label>"#),
            "{text}"
        );
        assert_eq!(QubesXml::parse(&text).unwrap(), x);
        assert_eq!(x.domain("dom0").unwrap().qid(), Some(0));
        let mut x = x;
        x.set_global("clockvm", "");
        let text = String::from_utf8(x.to_bytes().unwrap()).unwrap();
        assert!(
            text.contains("<property name=\"clockvm\"></property>\n"),
            "{text}"
        );
    }

    #[test]
    fn reads_core_admin_fixture_style() {
        // Shaped like qubes/tests/app.py's fixtures (ref labels, empty netvm).
        let text = r##"<?xml version="1.0" encoding="utf-8" ?>
<qubes version="3.0">
  <labels><label id="label-1" color="#cc0000">red</label></labels>
  <pools><pool driver="file" dir_path="/tmp/q" name="default"/></pools>
  <properties><property name="default_netvm">sys-net</property></properties>
  <domains>
    <domain class="StandaloneVM" id="domain-1">
      <properties>
        <property name="qid">1</property>
        <property name="name">sys-net</property>
        <property name="label" ref="label-1" />
        <property name="netvm"></property>
      </properties>
      <features/>
      <devices class="pci"><device backend-domain="dom0" id="00_19.0"><option name="no-strict-reset">True</option></device></devices>
      <volume-config><volume name="root" pool="lvm" vid="qubes_dom0/vm-sys-net-root" rw="True"/></volume-config>
    </domain>
  </domains>
</qubes>"##;
        let x = QubesXml::parse(text).unwrap();
        assert_eq!(x.global("default_netvm"), Some("sys-net"));
        let d = x.domain("sys-net").unwrap();
        assert_eq!(d.qid(), Some(1));
        assert_eq!(d.prop("netvm"), Some(""));
        assert_eq!(d.properties[2].reference.as_deref(), Some("label-1"));
        assert_eq!(d.devices[0].devices[0].options[0].1, "True");
        assert_eq!(
            d.volume_attr("root", "vid"),
            Some("qubes_dom0/vm-sys-net-root")
        );
        // And it survives our writer.
        let again = QubesXml::parse(std::str::from_utf8(&x.to_bytes().unwrap()).unwrap()).unwrap();
        assert_eq!(again, x);
    }

    #[test]
    fn broken_xml_is_an_error_not_a_panic() {
        for t in [
            "",
            "<qubes>",
            "<x/>",
            "<qubes></domains>",
            "<qubes/><qubes/>",
        ] {
            assert!(QubesXml::parse(t).is_err(), "{t:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,400}") {
            let _ = QubesXml::parse(&s);
        }

        #[test]
        fn text_values_roundtrip(v in "[!-~][ -~]{0,40}", f in "[a-z.-]{1,12}") {
            let mut x = QubesXml::initial();
            x.set_global("default_template", &v);
            x.domains[0].features.push((f, v.clone()));
            let back = QubesXml::parse(std::str::from_utf8(&x.to_bytes().unwrap()).unwrap()).unwrap();
            proptest::prop_assert_eq!(back, x);
        }
    }
}
