//! The unit's entry points and the start/stop commands, with a fake `xl`
//! and `systemctl` on PATH: the control flow only (what is called, in which
//! order, what is refused, what reaches systemd's notification socket). The
//! volumes are the root's recorded ones; the real Xen run is the installed
//! system's boot test.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::Duration;

use common::*;

fn socket(dir: &std::path::Path) -> (std::path::PathBuf, UnixDatagram) {
    let p = dir.join("notify");
    let s = UnixDatagram::bind(&p).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    (p, s)
}

fn recv(s: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 256];
    let n = s.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `qube run NAME` as its unit runs it, once systemd has been told it is
/// ready (asserted); the child's stderr is captured.
fn run_until_ready(f: &Fakes, r: &std::path::Path, name: &str) -> std::process::Child {
    let (sock_path, sock) = socket(f.dir.path());
    let run = f
        .qube(r, &["run", name])
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(
        recv(&sock),
        Some(format!("READY=1\nSTATUS={name} is running"))
    );
    run
}

#[test]
fn run_is_ready_once_xen_has_the_domain_then_halt_and_release() {
    let d = root();
    let r = d.path();
    xen_on(r);
    let f = Fakes::new();
    let run = run_until_ready(&f, r, "work");
    // The volumes of the run, as lvm.py's start makes them.
    let v = volumes(r);
    for want in [
        "snapshot qubes_dom0/vm-work-root-snap origin=qubes_dom0/vm-fedora-41-xfce-root",
        "snapshot qubes_dom0/vm-work-private-snap origin=qubes_dom0/vm-work-private",
        "thin qubes_dom0/vm-work-volatile pool=qubes_dom0/vm-pool size=10737418240",
    ] {
        assert!(v.contains(&want.to_string()), "{want} not in {v:#?}");
    }
    let cfg = r.join("var/lib/qubes/xl/work.cfg");
    // work's network, computed now from qubes.xml, after the config's own
    // kernel line: its address, its netvm sys-firewall's as gateway, DNS.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let extra = firstboot::xlcfg::extra_of(&text).unwrap();
    let create = f
        .calls()
        .into_iter()
        .find(|c| c.starts_with("xl create"))
        .unwrap();
    let want = format!(
        "xl create -F {} extra=\"{extra} bulkhead.ip=10.137.0.",
        cfg.display()
    );
    assert!(create.starts_with(&want), "{create}\nwanted {want}");
    assert!(
        create.contains(" bulkhead.gateway=10.138.0.")
            && create.ends_with(" bulkhead.dns=10.139.1.1,10.139.1.2\""),
        "{create}"
    );
    // work serves no network: no backend is waited for.
    assert!(
        !f.calls().iter().any(|c| c.starts_with("xenstore-read")),
        "{:?}",
        f.calls()
    );

    // While it runs: no second run, no release.
    let err = fails(&f.qube(r, &["run", "work"]).output().unwrap());
    assert!(
        err.contains("Xen already has a domain work") && err.contains("qube kill work"),
        "{err}"
    );
    let err = fails(&f.qube(r, &["release", "work"]).output().unwrap());
    assert!(err.contains("Xen still has the domain work"), "{err}");
    assert!(has_volume(r, "snapshot qubes_dom0/vm-work-private-snap"));

    // The unit's stop: halt ends the domain, run exits with xl's status.
    let err = ok(&f.qube(r, &["halt", "work"]).output().unwrap());
    assert!(err.contains("work shut down"), "{err}");
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Parsing config from"),
        "xl's words reach the journal"
    );
    ok(&f.qube(r, &["release", "work"]).output().unwrap());
    let v = volumes(r);
    assert!(
        v.iter()
            .all(|l| !l.contains("vm-work-root-snap") && !l.contains("vm-work-volatile")),
        "{v:#?}"
    );
    assert!(
        v.iter().any(|l| l
            .starts_with("snapshot qubes_dom0/vm-work-private origin=qubes_dom0/vm-work-private-")),
        "{v:#?}"
    );
    assert!(
        v.iter()
            .any(|l| l.starts_with("thin qubes_dom0/vm-work-private-") && l.contains("-back ")),
        "{v:#?}"
    );
    // Stopping what is stopped does nothing.
    let err = ok(&f.qube(r, &["halt", "work"]).output().unwrap());
    assert!(err.contains("work is not running"), "{err}");
    let before = volumes(r);
    ok(&f.qube(r, &["release", "work"]).output().unwrap());
    assert_eq!(volumes(r), before);
}

#[test]
fn run_fails_with_xls_words_when_the_domain_never_comes_up() {
    let d = root();
    let r = d.path();
    xen_on(r);
    let f = Fakes::new();
    let (sock_path, sock) = socket(f.dir.path());
    let o = f
        .qube(r, &["run", "vault"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("FAKE_XL_CREATE_FAILS", "1")
        .output()
        .unwrap();
    let err = fails(&o);
    assert!(
        err.contains("the config is broken") && err.contains("qube start vault"),
        "{err}"
    );
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert_eq!(recv(&sock), None, "READY sent for a domain that never ran");
    // The unit's ExecStopPost gives back what the run prepared.
    assert!(has_volume(r, "snapshot qubes_dom0/vm-vault-root-snap"));
    ok(&f.qube(r, &["release", "vault"]).output().unwrap());
    assert!(!has_volume(r, "snapshot qubes_dom0/vm-vault-root-snap"));
}

#[test]
fn run_exits_with_xls_status() {
    let d = root();
    let r = d.path();
    xen_on(r);
    let f = Fakes::new();
    let (sock_path, sock) = socket(f.dir.path());
    let run = f
        .qube(r, &["run", "personal"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("FAKE_XL_EXIT", "5")
        .spawn()
        .unwrap();
    assert!(recv(&sock).is_some_and(|m| m.starts_with("READY=1")));
    ok(&f.qube(r, &["kill", "personal"]).output().unwrap());
    assert_eq!(run.wait_with_output().unwrap().status.code(), Some(5));
}

/// `qube halt work ARGS` while Xen runs work, the fake xl told `fake`;
/// the fakes (for their calls) and halt's words.
fn halt_running_work(args: &[&str], fake: &str) -> (Fakes, String) {
    let d = root();
    let r = d.path();
    xen_on(r);
    let f = Fakes::new();
    f.domain("work", "-b----");
    let o = f
        .qube(r, &[&["halt", "work"][..], args].concat())
        .env(fake, "1")
        .output()
        .unwrap();
    let err = ok(&o);
    (f, err)
}

#[test]
fn halt_destroys_a_domain_that_does_not_shut_down() {
    let (f, err) = halt_running_work(&["--timeout", "1"], "FAKE_XL_SHUTDOWN_HANGS");
    assert!(
        err.contains("work destroyed: it did not shut down within 1 s"),
        "{err}"
    );
    assert_eq!(
        f.calls().last().map(String::as_str),
        Some("xl destroy work")
    );
}

#[test]
fn halt_returns_only_once_the_domain_is_gone() {
    // `xl shutdown -w` returns when the guest has shut down; its xl then
    // destroys the domain. Returning before that, the unit's stop would
    // kill that xl midway and leave the domain holding its volumes.
    let (f, err) = halt_running_work(&[], "FAKE_XL_SHUTDOWN_LINGERS");
    assert!(err.contains("work shut down"), "{err}");
    assert!(
        !f.state().join("dom-work").exists(),
        "halt returned while Xen still had work"
    );
    assert!(
        !f.calls().iter().any(|c| c.starts_with("xl destroy")),
        "{:?}",
        f.calls()
    );
}

#[test]
fn a_netvm_is_ready_only_once_its_network_backend_serves_clients() {
    let d = root();
    let r = d.path();
    xen_on(r);
    let f = Fakes::new();
    let run = run_until_ready(&f, r, "sys-net");
    // The fake backend answers "ready" the third time it is asked.
    let asked: Vec<String> = f
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("xenstore-read"))
        .collect();
    assert_eq!(
        asked,
        vec!["xenstore-read /local/domain/7/data/bulkhead-netback".to_string(); 3]
    );
    ok(&f.qube(r, &["halt", "sys-net"]).output().unwrap());
    let out = run.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting for sys-net's network backend"),
        "{out:?}"
    );
}

#[test]
fn start_goes_through_the_units_netvms_first() {
    let d = root();
    let r = d.path();
    xen_on(r);
    let f = Fakes::new();
    let err = ok(&f.qube(r, &["start", "work"]).output().unwrap());
    assert!(
        err.contains("work's network comes through sys-net -> sys-firewall: starting sys-net, sys-firewall first"),
        "{err}"
    );
    let starts: Vec<String> = f
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("systemctl"))
        .collect();
    assert_eq!(
        starts,
        [
            "systemctl start bulkhead-qube@sys-net.service",
            "systemctl start bulkhead-qube@sys-firewall.service",
            "systemctl start bulkhead-qube@work.service",
        ]
    );

    // sys-net already runs: only the rest; a running qube is left alone.
    let f = Fakes::new();
    f.domain("sys-net", "-b----");
    f.domain("vault", "-b----");
    let err = ok(&f.qube(r, &["start", "vault", "personal"]).output().unwrap());
    assert!(err.contains("vault is already running"), "{err}");
    let starts: Vec<String> = f
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("systemctl"))
        .collect();
    assert_eq!(
        starts,
        [
            "systemctl start bulkhead-qube@sys-firewall.service",
            "systemctl start bulkhead-qube@personal.service",
        ]
    );

    let f = Fakes::new();
    let o = f
        .qube(r, &["start", "vault"])
        .env("FAKE_SYSTEMCTL_EXIT", "1")
        .output()
        .unwrap();
    let err = fails(&o);
    assert!(
        err.contains("vault did not start")
            && err.contains("journalctl -u bulkhead-qube@vault.service"),
        "{err}"
    );
}

#[test]
fn shutdown_refuses_a_netvm_under_running_clients_unless_forced() {
    let d = root();
    let r = d.path();
    xen_on(r);
    let f = Fakes::new();
    for q in ["sys-net", "sys-firewall", "work", "personal"] {
        f.domain(q, "-b----");
    }
    let err = fails(&f.qube(r, &["shutdown", "sys-firewall"]).output().unwrap());
    assert!(
        err.contains("sys-firewall is the netvm of the running qubes personal, work")
            && err.contains("qube shutdown personal work sys-firewall")
            && err.contains("--force"),
        "{err}"
    );
    assert!(
        f.calls().iter().all(|c| !c.starts_with("systemctl")),
        "{:?}",
        f.calls()
    );

    // Shut down together with its clients: no refusal.
    ok(&f
        .qube(r, &["shutdown", "work", "personal", "sys-firewall"])
        .output()
        .unwrap());
    assert_eq!(
        f.calls().last().map(String::as_str),
        Some(
            "systemctl stop bulkhead-qube@work.service bulkhead-qube@personal.service bulkhead-qube@sys-firewall.service"
        )
    );

    let err = ok(&f
        .qube(r, &["shutdown", "--force", "sys-net"])
        .output()
        .unwrap());
    assert!(err.contains("--force: sys-firewall stop too"), "{err}");
    assert_eq!(
        f.calls().last().map(String::as_str),
        Some("systemctl stop bulkhead-qube@sys-net.service")
    );
}

#[test]
fn kill_destroys_only_what_runs() {
    let d = root();
    let r = d.path();
    xen_on(r);
    let f = Fakes::new();
    f.domain("work", "-b----");
    let err = ok(&f.qube(r, &["kill", "work"]).output().unwrap());
    assert!(
        err.contains("bulkhead-qube@work.service ends and releases its volumes"),
        "{err}"
    );
    assert_eq!(
        f.calls().last().map(String::as_str),
        Some("xl destroy work")
    );
    let err = ok(&f.qube(r, &["kill", "vault"]).output().unwrap());
    assert!(
        err.contains("vault is not running; nothing to kill"),
        "{err}"
    );
    let err = fails(&f.qube(r, &["console", "vault"]).output().unwrap());
    assert!(
        err.contains("vault is not running: `qube start vault` first"),
        "{err}"
    );
}
