//! The Admin API backend against a small qubesd stand-in on a Unix socket
//! that speaks qubesd's framing (`METHOD+ARG dom0 name DEST\0PAYLOAD`,
//! answers `0\0DATA` or `2\0TYPE\0TRACEBACK\0MESSAGE\0`) and keeps a model of
//! the qubes, refusing what qubesd refuses (a qube created twice, a
//! disposable of a non-dvm template, starting a running qube, unknown qubes).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use firstboot::adminapi::AdminApi;
use firstboot::backend::{Backend, Hooks};
use firstboot::facts::Facts;
use firstboot::plan::Plan;
use firstboot::run::{self, Options, Quiet, State};
use firstboot::settings::Settings;
use firstboot::storage::Recorded;

#[derive(Debug, Clone, PartialEq)]
struct Qube {
    class: String,
    label: String,
    props: BTreeMap<String, String>,
    features: BTreeMap<String, String>,
    pci: Vec<String>,
    state: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Model {
    qubes: BTreeMap<String, Qube>,
    globals: BTreeMap<String, String>,
    pools: Vec<String>,
}

#[derive(Default)]
struct Server {
    model: Model,
    calls: Vec<String>,
}

type Reply = Result<String, (&'static str, String)>;

impl Server {
    fn with_templates() -> Server {
        let mut s = Server::default();
        for (n, c, l) in [
            ("dom0", "AdminVM", "black"),
            ("fedora-41-xfce", "TemplateVM", "black"),
            ("debian-12-xfce", "TemplateVM", "black"),
        ] {
            s.model.qubes.insert(
                n.into(),
                Qube {
                    class: c.into(),
                    label: l.into(),
                    props: BTreeMap::new(),
                    features: BTreeMap::new(),
                    pci: Vec::new(),
                    state: if c == "AdminVM" { "Running" } else { "Halted" }.into(),
                },
            );
        }
        s.model.pools = vec!["varlibqubes".into(), "linux-kernel".into()];
        s
    }

    fn handle(&mut self, meth: &str, arg: &str, dest: &str, payload: &str) -> Reply {
        self.calls.push(format!("{meth}+{arg} {dest} {payload}"));
        let m = &mut self.model;
        let not_found = || ("QubesVMNotFoundError", format!("No such domain: '{dest}'"));
        let is_vm_prop = |p: &str| {
            matches!(
                p,
                "default_template" | "default_netvm" | "updatevm" | "clockvm" | "default_dispvm"
            )
        };
        match meth {
            "admin.vm.List" => Ok(m
                .qubes
                .iter()
                .map(|(n, q)| {
                    format!(
                        "{n} class={} state={} uuid=00000000-0000-0000-0000-000000000000\n",
                        q.class, q.state
                    )
                })
                .collect()),
            "admin.pool.List" => Ok(m.pools.iter().map(|p| format!("{p}\n")).collect()),
            "admin.pool.Add" => {
                let name = payload
                    .lines()
                    .find_map(|l| l.strip_prefix("name="))
                    .ok_or(("ProtocolError", "no name".to_string()))?;
                if arg != "lvm_thin" || m.pools.iter().any(|p| p == name) {
                    return Err((
                        "QubesValueError",
                        format!("pool {name} exists or bad driver {arg}"),
                    ));
                }
                m.pools.push(name.into());
                Ok(String::new())
            }
            "admin.property.Set" => {
                if is_vm_prop(arg) && !payload.is_empty() && !m.qubes.contains_key(payload) {
                    return Err((
                        "QubesVMNotFoundError",
                        format!("No such domain: '{payload}'"),
                    ));
                }
                if arg == "default_pool" && !m.pools.iter().any(|p| p == payload) {
                    return Err(("QubesException", format!("No such pool: {payload}")));
                }
                m.globals.insert(arg.into(), payload.into());
                Ok(String::new())
            }
            _ if meth.starts_with("admin.vm.Create.") => {
                let class = &meth["admin.vm.Create.".len()..];
                let kv: BTreeMap<&str, &str> = payload
                    .split(' ')
                    .filter_map(|p| p.split_once('='))
                    .collect();
                let name = kv.get("name").copied().unwrap_or_default();
                if m.qubes.contains_key(name) {
                    return Err(("QubesValueError", format!("VM {name} already exists")));
                }
                let t = m
                    .qubes
                    .get(arg)
                    .ok_or(("QubesVMNotFoundError", format!("No such domain: '{arg}'")))?;
                if class == "DispVM"
                    && t.props.get("template_for_dispvms").map(String::as_str) != Some("True")
                {
                    return Err((
                        "QubesValueError",
                        format!("template for disposable ({arg}) needs template_for_dispvms=True"),
                    ));
                }
                if class == "AppVM" && t.class != "TemplateVM" {
                    return Err(("QubesValueError", format!("{arg} is not a template")));
                }
                let mut props = BTreeMap::new();
                props.insert("template".to_string(), arg.to_string());
                m.qubes.insert(
                    name.into(),
                    Qube {
                        class: class.into(),
                        label: kv.get("label").copied().unwrap_or_default().into(),
                        props,
                        features: BTreeMap::new(),
                        pci: Vec::new(),
                        state: "Halted".into(),
                    },
                );
                Ok(String::new())
            }
            "admin.vm.property.Set" => {
                let has = |n: &str| m.qubes.contains_key(n);
                if arg == "netvm" && !payload.is_empty() && !has(payload) {
                    return Err((
                        "QubesVMNotFoundError",
                        format!("No such domain: '{payload}'"),
                    ));
                }
                let q = m.qubes.get_mut(dest).ok_or_else(not_found)?;
                q.props.insert(arg.into(), payload.into());
                Ok(String::new())
            }
            "admin.vm.property.Get" => {
                let q = m.qubes.get(dest).ok_or_else(not_found)?;
                let v = match arg {
                    "label" => q.label.clone(),
                    "netvm" => match q.props.get("netvm") {
                        Some(v) => v.clone(),
                        None => m.globals.get("default_netvm").cloned().unwrap_or_default(),
                    },
                    _ => q.props.get(arg).cloned().unwrap_or_default(),
                };
                Ok(format!("default=False type=str {v}"))
            }
            "admin.vm.feature.Set" => {
                let q = m.qubes.get_mut(dest).ok_or_else(not_found)?;
                q.features.insert(arg.into(), payload.into());
                Ok(String::new())
            }
            "admin.vm.device.pci.List" => {
                let q = m.qubes.get(dest).ok_or_else(not_found)?;
                Ok(q.pci
                    .iter()
                    .map(|p| format!("{p} persistent=True\n"))
                    .collect())
            }
            "admin.vm.device.pci.Attach" => {
                let q = m.qubes.get_mut(dest).ok_or_else(not_found)?;
                if q.pci.iter().any(|p| p == arg) {
                    return Err(("DeviceAlreadyAttached", format!("{arg} already attached")));
                }
                q.pci.push(arg.into());
                Ok(String::new())
            }
            "admin.vm.Start" => {
                let q = m.qubes.get_mut(dest).ok_or_else(not_found)?;
                if q.state == "Running" {
                    return Err((
                        "QubesVMNotHaltedError",
                        format!("Domain is running: {dest}"),
                    ));
                }
                q.state = "Running".into();
                Ok(String::new())
            }
            _ => Err(("ProtocolError", format!("unknown method {meth}"))),
        }
    }
}

/// Serves `server` on a socket in `dir` until the test ends.
fn serve(dir: &Path, server: Arc<Mutex<Server>>) -> PathBuf {
    let sock = dir.join("qubesd.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let mut buf = Vec::new();
            if c.read_to_end(&mut buf).is_err() {
                continue;
            }
            let Some(nul) = buf.iter().position(|&b| b == 0) else {
                continue; // framing error: qubesd closes without an answer
            };
            let head = String::from_utf8_lossy(&buf[..nul]).into_owned();
            let payload = String::from_utf8_lossy(&buf[nul + 1..]).into_owned();
            let f: Vec<&str> = head.splitn(4, ' ').collect();
            if f.len() != 4 || f[1] != "dom0" || f[2] != "name" {
                continue;
            }
            let (meth, arg) = f[0].split_once('+').unwrap_or((f[0], ""));
            let reply = server.lock().unwrap().handle(meth, arg, f[3], &payload);
            let bytes = match reply {
                Ok(data) => [b"0\0".as_slice(), data.as_bytes()].concat(),
                Err((t, m)) => format!("2\0{t}\0Traceback (stand-in)\0{m}\0").into_bytes(),
            };
            let _ = c.write_all(&bytes);
        }
    });
    sock
}

fn plan() -> Plan {
    let facts = Facts {
        net_pci: vec!["00:19.0".into()],
        usb_pci: vec!["00:14.0".into()],
        usb_keyboard_only: false,
        kernel: None,
        cpus: None,
    };
    Plan::new(&Settings::default(), &facts)
}

fn fresh_state(p: &Plan) -> State {
    State {
        plan_digest: p.digest(),
        plan: serde_json::to_value(p).unwrap(),
        done: Vec::new(),
    }
}

fn backend(dir: &Path, sock: &Path) -> AdminApi {
    let storage = Recorded::new(dir.join("volumes.list"), dir.join("actions.log"));
    AdminApi::new(sock, Box::new(storage))
}

#[test]
fn creates_the_default_qubes_through_qubesd() {
    let d = tempfile::tempdir().unwrap();
    let server = Arc::new(Mutex::new(Server::with_templates()));
    let sock = serve(d.path(), server.clone());
    let p = plan();
    let opts = Options::new(d.path());
    let mut b = backend(d.path(), &sock);
    run::execute(&opts, &p, fresh_state(&p), &mut b, &mut Quiet).unwrap();

    let s = server.lock().unwrap();
    let m = &s.model;
    let q = |n: &str| m.qubes.get(n).unwrap_or_else(|| panic!("{n} missing"));
    assert_eq!(q("sys-net").class, "AppVM");
    assert_eq!(q("sys-net").props["netvm"], "");
    assert_eq!(q("sys-net").props["virt_mode"], "hvm");
    assert_eq!(q("sys-net").pci, ["dom0+00_19.0"]);
    assert_eq!(q("sys-net").features["servicevm"], "1");
    assert_eq!(q("sys-firewall").class, "DispVM");
    assert_eq!(q("sys-firewall").props["template"], "default-dvm");
    assert_eq!(q("sys-firewall").props["netvm"], "sys-net");
    assert_eq!(q("sys-firewall").state, "Running");
    assert_eq!(q("sys-usb").state, "Running");
    assert_eq!(q("default-dvm").props["template_for_dispvms"], "True");
    assert_eq!(q("work").label, "blue");
    assert_eq!(q("vault").props["netvm"], "");
    for (k, v) in [
        ("default_template", "fedora-41-xfce"),
        ("default_netvm", "sys-firewall"),
        ("updatevm", "sys-firewall"),
        ("clockvm", "sys-net"),
        ("default_dispvm", "default-dvm"),
        ("default_pool", "vm-pool"),
    ] {
        assert_eq!(m.globals.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert!(m.pools.contains(&"vm-pool".to_string()));
    let creates = s
        .calls
        .iter()
        .filter(|c| c.starts_with("admin.vm.Create."))
        .count();
    assert_eq!(creates, 8);
    drop(s);

    // `ls` through the same API.
    let rows = b.list().unwrap();
    let work = rows.iter().find(|r| r.name == "work").unwrap();
    assert_eq!(
        (
            work.class.as_str(),
            work.label.as_str(),
            work.template.as_deref(),
            work.netvm.as_deref()
        ),
        (
            "AppVM",
            "blue",
            Some("fedora-41-xfce"),
            Some("sys-firewall")
        )
    );

    // A complete rerun from scratch state creates and starts nothing.
    let before = server.lock().unwrap().model.clone();
    let n = server.lock().unwrap().calls.len();
    run::execute(&opts, &p, fresh_state(&p), &mut b, &mut Quiet).unwrap();
    let s = server.lock().unwrap();
    assert_eq!(s.model, before);
    let new: Vec<&String> = s.calls[n..]
        .iter()
        .filter(|c| {
            c.starts_with("admin.vm.Create")
                || c.starts_with("admin.vm.Start")
                || c.starts_with("admin.pool.Add")
        })
        .collect();
    assert!(
        new.is_empty(),
        "the rerun created or started again: {new:?}"
    );
}

#[test]
fn failure_at_every_point_then_resume_gives_the_same_qubes() {
    // The reference and its points.
    let d = tempfile::tempdir().unwrap();
    let reference = Arc::new(Mutex::new(Server::with_templates()));
    let sock = serve(d.path(), reference.clone());
    let p = plan();
    let mut opts = Options::new(d.path());
    let log = d.path().join("points");
    opts.hooks = Hooks {
        log: Some(log.clone()),
        ..Hooks::default()
    };
    run::execute(
        &opts,
        &p,
        fresh_state(&p),
        &mut backend(d.path(), &sock),
        &mut Quiet,
    )
    .unwrap();
    let want = reference.lock().unwrap().model.clone();
    let points: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(points.len() > 60);

    for point in &points {
        let d = tempfile::tempdir().unwrap();
        let server = Arc::new(Mutex::new(Server::with_templates()));
        let sock = serve(d.path(), server.clone());
        let mut opts = Options::new(d.path());
        opts.hooks.fail_at = Some(point.clone());
        let err = run::execute(
            &opts,
            &p,
            fresh_state(&p),
            &mut backend(d.path(), &sock),
            &mut Quiet,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("firstboot --resume"),
            "{point}: {err}"
        );
        // Resume from the recorded state.
        let state = State::load(d.path()).unwrap().unwrap();
        opts.hooks.fail_at = None;
        run::execute(&opts, &p, state, &mut backend(d.path(), &sock), &mut Quiet)
            .unwrap_or_else(|e| panic!("resume after {point} failed: {e}"));
        let s = server.lock().unwrap();
        assert_eq!(s.model, want, "after a failure at {point}");
        let mut creates: Vec<&String> = s
            .calls
            .iter()
            .filter(|c| c.starts_with("admin.vm.Create."))
            .collect();
        let n = creates.len();
        creates.sort();
        creates.dedup();
        assert_eq!(n, creates.len(), "{point}: a qube was created twice");
    }
}

#[test]
fn qubesd_exceptions_are_reported_with_type_and_message() {
    let d = tempfile::tempdir().unwrap();
    let server = Arc::new(Mutex::new(Server::with_templates()));
    let sock = serve(d.path(), server.clone());
    let c = firstboot::adminapi::Client::new(&sock);
    let e = c
        .call("admin.vm.Start", None, "nonexistent", b"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("QubesVMNotFoundError") && e.contains("No such domain: 'nonexistent'"),
        "{e}"
    );
    let e = c
        .call("admin.vm.Frobnicate", None, "dom0", b"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("ProtocolError"), "{e}");
    // A connection closed without an answer (qubesd's framing-error reaction).
    let e = firstboot::adminapi::Client::new(d.path().join("nothing.sock"))
        .call("admin.vm.List", None, "dom0", b"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot connect to qubesd"), "{e}");
}
