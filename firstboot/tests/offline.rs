//! The offline backend run by the real binary against a temporary root:
//! qubes.xml read back and compared with the expected graph, the volume
//! list, the xl configs, `ls`, and the install options.

mod common;

use common::*;
use firstboot::qubesxml::QubesXml;

const VG: &str = "qubes_dom0";

fn store(root: &std::path::Path) -> QubesXml {
    QubesXml::load(&root.join("var/lib/qubes/qubes.xml")).unwrap()
}

#[test]
fn default_install_matches_qubes_initial_setup() {
    let d = tempdir();
    let root = d.path();
    machine(root, "");
    let err = ok(&firstboot(root, &[], &[]));
    assert!(err.contains("storage creation SKIPPED"), "{err}");
    assert!(err.contains("[21/21] Starting sys-usb"), "{err}");

    let x = store(root);
    // Labels and pools.
    let labels: Vec<(&str, &str, &str)> = x
        .labels
        .iter()
        .map(|l| (l.id.as_str(), l.color.as_str(), l.name.as_str()))
        .collect();
    assert_eq!(labels[0], ("label-1", "0xcc0000", "red"));
    assert_eq!(labels[5], ("label-6", "0x3465a4", "blue"));
    assert_eq!(labels[7], ("label-8", "0x000000", "black"));
    let pool = x.pool("vm-pool").unwrap();
    let get = |k: &str| pool.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    assert_eq!(get("driver"), Some("lvm_thin"));
    assert_eq!(get("volume_group"), Some(VG));
    assert_eq!(get("revisions_to_keep"), Some("2"));
    // Globals.
    for (k, v) in [
        ("default_template", "fedora-41-xfce"),
        ("default_netvm", "sys-firewall"),
        ("updatevm", "sys-firewall"),
        ("clockvm", "sys-net"),
        ("default_dispvm", "default-dvm"),
        ("default_pool", "vm-pool"),
        ("default_kernel", "6.6.48-1"),
    ] {
        assert_eq!(x.global(k), Some(v), "{k}");
    }
    // The graph: name -> (qid, class, label, template, netvm).
    let row = |n: &str| {
        let d = x.domain(n).unwrap_or_else(|| panic!("{n} missing"));
        (
            d.qid().unwrap(),
            d.class.as_str(),
            d.prop("label").unwrap(),
            d.prop("template"),
            d.prop("netvm"),
        )
    };
    let t = Some("fedora-41-xfce");
    assert_eq!(row("dom0"), (0, "AdminVM", "black", None, None));
    assert_eq!(
        row("fedora-41-xfce"),
        (1, "TemplateVM", "black", None, None)
    );
    assert_eq!(
        row("debian-12-xfce"),
        (2, "TemplateVM", "black", None, None)
    );
    assert_eq!(row("sys-net"), (3, "AppVM", "red", t, Some("")));
    assert_eq!(row("default-dvm"), (4, "AppVM", "red", t, None));
    assert_eq!(
        row("sys-firewall"),
        (5, "DispVM", "green", Some("default-dvm"), Some("sys-net"))
    );
    assert_eq!(
        row("sys-usb"),
        (6, "DispVM", "red", Some("default-dvm"), Some(""))
    );
    assert_eq!(row("personal"), (7, "AppVM", "yellow", t, None));
    assert_eq!(row("work"), (8, "AppVM", "blue", t, None));
    assert_eq!(row("untrusted"), (9, "AppVM", "red", t, None));
    assert_eq!(row("vault"), (10, "AppVM", "black", t, Some("")));
    assert_eq!(x.domains.len(), 11);

    let net = x.domain("sys-net").unwrap();
    for (k, v) in [
        ("virt_mode", "hvm"),
        ("memory", "300"),
        ("provides_network", "True"),
        ("autostart", "True"),
    ] {
        assert_eq!(net.prop(k), Some(v), "sys-net {k}");
    }
    assert_eq!(net.devices[0].class, "pci");
    assert_eq!(net.devices[0].devices[0].attrs[1].1, "00_19.0");
    assert!(net.features.contains(&("servicevm".into(), "1".into())));
    let fw = x.domain("sys-firewall").unwrap();
    assert_eq!(fw.prop("provides_network"), Some("True"));
    assert_eq!(fw.prop("memory"), Some("500"));
    let usb = x.domain("sys-usb").unwrap();
    assert_eq!(usb.prop("virt_mode"), Some("hvm"));
    assert_eq!(usb.devices[0].devices[0].attrs[1].1, "00_14.0");
    assert_eq!(
        usb.devices[0].devices[0].options[0],
        ("no-strict-reset".into(), "True".into())
    );
    let dvm = x.domain("default-dvm").unwrap();
    assert_eq!(dvm.prop("template_for_dispvms"), Some("True"));
    assert!(
        dvm.features
            .contains(&("appmenus-dispvm".into(), "1".into()))
    );

    // Volume config: AppVM root snapshots the template's root; DispVM private
    // snapshots default-dvm's private.
    let work = x.domain("work").unwrap();
    assert_eq!(
        work.volume_attr("root", "source"),
        Some("qubes_dom0/vm-fedora-41-xfce-root")
    );
    assert_eq!(
        work.volume_attr("private", "vid"),
        Some("qubes_dom0/vm-work-private")
    );
    assert_eq!(work.volume_attr("kernel", "vid"), Some("6.6.48-1"));
    assert_eq!(
        fw.volume_attr("private", "source"),
        Some("qubes_dom0/vm-default-dvm-private")
    );

    // The volume list: what core-admin creates at creation. Snapshots and
    // volatile volumes are made when a qube starts (`qube run`), which an
    // offline root never does.
    let list = read(root, "var/lib/bulkhead/firstboot/volumes.list");
    let lines: Vec<&str> = list.lines().filter(|l| !l.starts_with('#')).collect();
    let p = "pool=qubes_dom0/vm-pool";
    assert_eq!(
        lines,
        [
            format!("thin qubes_dom0/vm-debian-12-xfce-private {p} size=2147483648"),
            format!(
                "thin qubes_dom0/vm-debian-12-xfce-root {p} size=10737418240 image=/usr/share/bulkhead/templates/debian-12-xfce.img"
            ),
            format!("thin qubes_dom0/vm-default-dvm-private {p} size=2147483648"),
            format!("thin qubes_dom0/vm-fedora-41-xfce-private {p} size=2147483648"),
            format!(
                "thin qubes_dom0/vm-fedora-41-xfce-root {p} size=10737418240 image=/usr/share/bulkhead/templates/fedora-41-xfce.img"
            ),
            format!("thin qubes_dom0/vm-personal-private {p} size=2147483648"),
            "thin-pool qubes_dom0/vm-pool size=90%FREE".to_string(),
            format!("thin qubes_dom0/vm-sys-net-private {p} size=2147483648"),
            format!("thin qubes_dom0/vm-untrusted-private {p} size=2147483648"),
            format!("thin qubes_dom0/vm-vault-private {p} size=2147483648"),
            format!("thin qubes_dom0/vm-work-private {p} size=2147483648"),
        ]
    );

    // xl configs.
    let net = read(root, "var/lib/qubes/xl/sys-net.cfg");
    for want in [
        "name = \"sys-net\"",
        "type = \"hvm\"",
        "memory = 300\nmaxmem = 300",
        "\"0000:00:19.0\"",
        "device_model_stubdomain_override = 1",
        "kernel = \"/var/lib/qubes/vm-kernels/6.6.48-1/vmlinuz\"",
        "target=/dev/qubes_dom0/vm-sys-net-root-snap",
    ] {
        assert!(net.contains(want), "sys-net.cfg lacks {want:?}:\n{net}");
    }
    assert!(!net.contains("vif"), "sys-net has no netvm:\n{net}");
    let work = read(root, "var/lib/qubes/xl/work.cfg");
    assert!(work.contains("type = \"pvh\""), "{work}");
    assert!(
        work.contains("mac=00:16:3e:5e:6c:08, ip=10.137.0.8, backend=sys-firewall"),
        "{work}"
    );
    assert!(
        work.contains("target=/dev/qubes_dom0/vm-work-private-snap"),
        "{work}"
    );
    let vault = read(root, "var/lib/qubes/xl/vault.cfg");
    assert!(!vault.contains("vif"), "vault is never networked:\n{vault}");
    let fw = read(root, "var/lib/qubes/xl/sys-firewall.cfg");
    assert!(fw.contains("backend=sys-net"), "{fw}");

    // systemd: networked qubes follow their netvm's unit, autostart ones are enabled.
    let dropin = |q: &str| {
        std::fs::read_to_string(root.join(format!(
            "etc/systemd/system/bulkhead-qube@{q}.service.d/50-netvm.conf"
        )))
        .ok()
    };
    let needs = |n: &str| {
        format!("[Unit]\nRequires=bulkhead-qube@{n}.service\nAfter=bulkhead-qube@{n}.service\n")
    };
    assert!(dropin("sys-firewall").unwrap().ends_with(&needs("sys-net")));
    assert!(dropin("work").unwrap().ends_with(&needs("sys-firewall")));
    assert!(
        dropin("default-dvm")
            .unwrap()
            .ends_with(&needs("sys-firewall"))
    );
    for unnetworked in ["sys-net", "sys-usb", "vault", "fedora-41-xfce"] {
        assert_eq!(dropin(unnetworked), None, "{unnetworked}");
    }
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    let mut enabled: Vec<String> = std::fs::read_dir(&wants)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            assert_eq!(
                std::fs::read_link(e.path()).unwrap(),
                std::path::Path::new("/usr/lib/systemd/system/bulkhead-qube@.service")
            );
            e.file_name().to_string_lossy().into_owned()
        })
        .collect();
    enabled.sort();
    assert_eq!(
        enabled,
        [
            "bulkhead-qube@sys-firewall.service",
            "bulkhead-qube@sys-net.service",
            "bulkhead-qube@sys-usb.service"
        ]
    );
    assert!(
        err.contains("sys-net, sys-firewall: not started now (offline root); bulkhead-qube@sys-firewall.service starts them at boot"),
        "{err}"
    );

    // The USB input policy of qvm/sys-usb.sls.
    let policy = read(root, "etc/qubes/policy.d/50-config-input.policy");
    assert!(
        policy.contains("qubes.InputKeyboard * sys-usb dom0 deny\n"),
        "{policy}"
    );
    assert!(
        policy.contains("qubes.InputMouse * sys-usb dom0 ask default_target=dom0\n"),
        "{policy}"
    );

    // A second run does nothing.
    let before = tree(root);
    let err = ok(&firstboot(root, &[], &[]));
    assert!(err.contains("already complete"), "{err}");
    assert_eq!(tree(root), before);
}

#[test]
fn ls_lists_like_qvm_ls() {
    let d = tempdir();
    let root = d.path();
    machine(root, "");
    ok(&firstboot(root, &[], &[]));
    let o = firstboot(root, &["ls"], &[]);
    ok(&o);
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "CLASS", "LABEL", "TEMPLATE", "NETVM", "STATE"]
    );
    let find = |n: &str| lines.iter().find(|l| l[0] == n).unwrap().clone();
    assert_eq!(
        find("dom0"),
        ["dom0", "AdminVM", "black", "-", "-", "Running"]
    );
    assert_eq!(
        find("work"),
        [
            "work",
            "AppVM",
            "blue",
            "fedora-41-xfce",
            "sys-firewall",
            "Halted"
        ]
    );
    assert_eq!(
        find("sys-firewall"),
        [
            "sys-firewall",
            "DispVM",
            "green",
            "default-dvm",
            "sys-net",
            "Halted"
        ]
    );
    assert_eq!(
        find("vault"),
        ["vault", "AppVM", "black", "fedora-41-xfce", "-", "Halted"]
    );
    assert_eq!(lines.len(), 12);

    let o = firstboot(root, &["ls", "--json"], &[]);
    ok(&o);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let arr = j.as_array().unwrap();
    assert_eq!(arr.len(), 11);
    let p = arr.iter().find(|r| r["name"] == "personal").unwrap();
    assert_eq!(p["label"], "yellow");
    assert_eq!(p["netvm"], "sys-firewall");
    assert_eq!(p["class"], "AppVM");
}

fn names(root: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = store(root)
        .domains
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn install_options() {
    // Installed onto USB: no sys-usb.
    let d = tempdir();
    machine(d.path(), "installed_on_usb = true\n");
    let err = ok(&firstboot(d.path(), &[], &[]));
    assert!(err.contains("installed onto a USB drive"), "{err}");
    assert!(!names(d.path()).contains(&"sys-usb".to_string()));
    assert!(
        !d.path()
            .join("etc/qubes/policy.d/50-config-input.policy")
            .exists()
    );

    // sys-net as USB qube, disposable sys-net.
    let d = tempdir();
    machine(
        d.path(),
        "usb_qube = \"sys-net\"\ndisposable_sys_net = true\n",
    );
    ok(&firstboot(d.path(), &[], &[]));
    let x = store(d.path());
    assert!(x.domain("sys-usb").is_none());
    let net = x.domain("sys-net").unwrap();
    assert_eq!(net.class, "DispVM");
    assert_eq!(net.prop("template"), Some("default-dvm"));
    let ids: Vec<&str> = net.devices[0]
        .devices
        .iter()
        .map(|d| d.attrs[1].1.as_str())
        .collect();
    assert_eq!(ids, ["00_19.0", "00_14.0"]);
    assert!(x.domain("default-dvm").unwrap().qid() < net.qid());
    let policy = read(d.path(), "etc/qubes/policy.d/50-config-input.policy");
    assert!(
        policy.contains("qubes.InputKeyboard * sys-net dom0 deny"),
        "{policy}"
    );

    // No default AppVMs.
    let d = tempdir();
    machine(d.path(), "default_appvms = false\n");
    ok(&firstboot(d.path(), &[], &[]));
    assert_eq!(
        names(d.path()),
        [
            "debian-12-xfce",
            "default-dvm",
            "dom0",
            "fedora-41-xfce",
            "sys-firewall",
            "sys-net",
            "sys-usb"
        ]
    );

    // Nothing at all.
    let d = tempdir();
    machine(d.path(), "skip_everything = true\n");
    ok(&firstboot(d.path(), &[], &[]));
    assert_eq!(names(d.path()), ["dom0"]);
    assert!(
        !d.path()
            .join("var/lib/bulkhead/firstboot/volumes.list")
            .exists()
    );

    // Only USB keyboards: sys-usb skipped with a warning.
    let d = tempdir();
    machine(d.path(), "usb_keyboard_only = true\n");
    let err = ok(&firstboot(d.path(), &[], &[]));
    assert!(
        err.contains("warning: every keyboard is a USB keyboard"),
        "{err}"
    );
    assert!(!names(d.path()).contains(&"sys-usb".to_string()));
}

#[test]
fn missing_settings_file_means_qubes_defaults() {
    let d = tempdir();
    let o = firstboot(d.path(), &["plan", "--json"], &[]);
    ok(&o);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(steps.first(), Some(&"init-store"));
    assert_eq!(plan["pool"]["percent_free"], 90);
    assert_eq!(plan["pool"]["volume_group"], "qubes_dom0");
}

#[test]
fn bad_settings_are_refused_with_the_reason() {
    let d = tempdir();
    machine(d.path(), "sys_usb = false\n");
    let o = firstboot(d.path(), &[], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("firstboot.toml") && err.contains("sys_usb"),
        "{err}"
    );
    assert!(!d.path().join("var/lib/qubes/qubes.xml").exists());
}

#[test]
fn record_mode_is_refused_on_the_real_root() {
    let o = std::process::Command::new(BIN)
        .args(["--root", "/", "--storage", "record"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("only allowed with --root"));
}

#[test]
fn resume_finishes_the_stored_plan_unless_replan() {
    for replan in [false, true] {
        let d = tempdir();
        let root = d.path();
        machine(root, "");
        let o = firstboot(
            root,
            &[],
            &[("BULKHEAD_FIRSTBOOT_KILL_AT", "qube:work:begin")],
        );
        assert!(!o.status.success());
        std::fs::write(
            root.join("etc/bulkhead/firstboot.toml"),
            "default_appvms = false\n",
        )
        .unwrap();
        let args: &[&str] = if replan {
            &["--resume", "--replan"]
        } else {
            &["--resume"]
        };
        let err = ok(&firstboot(root, args, &[]));
        let names = names(root);
        if replan {
            assert!(!names.contains(&"work".to_string()), "{names:?}");
            // Made before the interruption; replanning does not remove qubes.
            assert!(names.contains(&"personal".to_string()));
        } else {
            assert!(err.contains("changed since the interrupted run"), "{err}");
            assert!(names.contains(&"work".to_string()) && names.contains(&"vault".to_string()));
        }
    }
}

#[test]
fn a_template_the_installer_wrote_is_adopted_and_never_made_empty() {
    let settings =
        "[[templates]]\nname = \"debian-12\"\ninstalled = true\nroot_size = 10737418240\n";
    let state = "var/lib/bulkhead/firstboot";

    // The installer's volume is missing: firstboot stops and says so; no
    // empty root is made in its place.
    let d = tempdir();
    machine(d.path(), settings);
    let o = firstboot(d.path(), &[], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the root volume of template debian-12 (qubes_dom0/vm-debian-12-root), which the installer wrote, is missing"),
        "{err}"
    );
    let list = std::fs::read_to_string(d.path().join(state).join("volumes.list")).unwrap();
    assert!(!list.contains("vm-debian-12-root "), "{list}");

    // It exists, as the installer leaves it: adopted as it is, nothing
    // imported, every qube based on it.
    let d = tempdir();
    machine(d.path(), settings);
    std::fs::create_dir_all(d.path().join(state)).unwrap();
    std::fs::write(
        d.path().join(state).join("volumes.list"),
        "thin-pool qubes_dom0/vm-pool size=90%FREE\nthin qubes_dom0/vm-debian-12-root pool=qubes_dom0/vm-pool size=10737418240\n",
    )
    .unwrap();
    ok(&firstboot(d.path(), &[], &[]));
    let actions = std::fs::read_to_string(d.path().join(state).join("actions.log")).unwrap();
    assert!(!actions.contains("vm-debian-12-root"), "{actions}");
    assert!(!actions.contains("create-pool"), "{actions}");
    let x = store(d.path());
    let t = x.domain("debian-12").unwrap();
    assert_eq!(t.class, "TemplateVM");
    assert_eq!(
        t.volume_attr("root", "vid"),
        Some("qubes_dom0/vm-debian-12-root")
    );
    assert_eq!(
        x.domain("work").unwrap().prop("template"),
        Some("debian-12")
    );
}

#[test]
fn qube_configs_follow_the_machine_cpus_and_the_extra_kernel_words() {
    let d = tempdir();
    machine(
        d.path(),
        "qube_kernel_args = \"systemd.default_timeout_start_sec=900 quiet\"\n",
    );
    let cpu = d.path().join("sys/devices/system/cpu");
    std::fs::create_dir_all(&cpu).unwrap();
    std::fs::write(cpu.join("online"), "0\n").unwrap();
    ok(&firstboot(d.path(), &[], &[]));
    let cfg = read(d.path(), "var/lib/qubes/xl/work.cfg");
    assert!(cfg.contains("\nvcpus = 1\n"), "{cfg}");
    let extra = firstboot::xlcfg::extra_of(&cfg).unwrap();
    assert!(
        extra.ends_with(" systemd.hostname=work systemd.default_timeout_start_sec=900 quiet"),
        "{extra}"
    );

    // a word that would break out of the kernel line is refused
    let d = tempdir();
    machine(d.path(), "qube_kernel_args = \"a\\\" b\"\n");
    let o = firstboot(d.path(), &[], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("qube_kernel_args"), "{err}");
}
