//! Every generated Xen domain config is accepted by Debian's real
//! `xl create -n` (dry run: parse, check, print the domain config as JSON).
//! xl needs a hypervisor to start at all; tests/xl-shim.c (LD_PRELOAD)
//! answers its version and host-layout queries, nothing else, so the judging
//! is Xen's own libxl/libxlutil. The JSON is then compared with what each
//! qube should get.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn xl_binary() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("xen-"))
        .map(|e| e.path().join("bin/xl"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().expect(
        "Xen's xl is needed: apt-get install xen-utils-4.17 (listed in ci/host-packages.txt)",
    )
}

fn shim(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/xl-shim.c");
    let out = dir.join("xl-shim.so");
    let st = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("a C compiler (build-essential) is needed for the xl shim");
    assert!(st.success(), "compiling {}", src.display());
    out
}

fn xl_dry_run(xl: &Path, shim: &Path, cfg: &Path) -> Result<serde_json::Value, String> {
    xl_dry_run_with(xl, shim, cfg, &[])
}

/// With settings after the config, as `qube run` passes them.
fn xl_dry_run_with(
    xl: &Path,
    shim: &Path,
    cfg: &Path,
    settings: &[String],
) -> Result<serde_json::Value, String> {
    let o = Command::new(xl)
        .args(["create", "-n"])
        .arg(cfg)
        .args(settings)
        .env("LD_PRELOAD", shim)
        .output()
        .unwrap();
    if !o.status.success() {
        return Err(format!(
            "xl create -n {} failed ({}): {}",
            cfg.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    serde_json::from_slice(&o.stdout).map_err(|e| format!("xl printed no JSON ({e})"))
}

#[test]
fn xl_create_accepts_every_config() {
    let xl = xl_binary();
    let d = tempdir();
    let shim = shim(d.path());
    let root = d.path().join("root");
    machine(&root, "");
    ok(&firstboot(&root, &[], &[]));

    let dir = root.join("var/lib/qubes/xl");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.path().file_stem().unwrap().to_string_lossy().into_owned();
        let j = xl_dry_run(&xl, &shim, &e.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(j["c_info"]["name"], name.as_str());
        let disks: Vec<&str> = j["disks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["pdev_path"].as_str().unwrap())
            .collect();
        assert!(
            disks.contains(&format!("/dev/qubes_dom0/vm-{name}-volatile").as_str()),
            "{name}: {disks:?}"
        );
        n += 1;
    }
    assert_eq!(n, 10, "one config per qube but dom0");

    let j = |q: &str| xl_dry_run(&xl, &shim, &dir.join(format!("{q}.cfg"))).unwrap();
    let net = j("sys-net");
    assert_eq!(net["c_info"]["type"], "hvm");
    assert_eq!(net["b_info"]["target_memkb"], 300 * 1024);
    assert_eq!(net["b_info"]["max_memkb"], 300 * 1024);
    assert_eq!(net["b_info"]["device_model_stubdomain"], "True");
    let pci = &net["pcidevs"][0];
    // xl's JSON leaves out zero fields.
    let f = |k: &str| pci[k].as_u64().unwrap_or(0);
    assert_eq!(
        (f("domain"), f("bus"), f("dev"), f("func")),
        (0, 0, 0x19, 0)
    );
    assert!(net["nics"].is_null(), "sys-net has no netvm");

    let work = j("work");
    assert_eq!(work["c_info"]["type"], "pvh");
    assert_eq!(work["b_info"]["max_memkb"], 400 * 1024);
    assert_eq!(
        work["b_info"]["kernel"],
        "/var/lib/qubes/vm-kernels/6.6.48-1/vmlinuz"
    );
    assert_eq!(work["nics"][0]["backend_domname"], "sys-firewall");
    assert_eq!(work["nics"][0]["ip"], "10.137.0.8");
    let disks: Vec<&str> = work["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pdev_path"].as_str().unwrap())
        .collect();
    assert_eq!(
        disks,
        [
            "/dev/qubes_dom0/vm-work-root-snap",
            "/dev/qubes_dom0/vm-work-private-snap",
            "/dev/qubes_dom0/vm-work-volatile",
        ]
    );
    assert!(
        work["b_info"]["cmdline"]
            .as_str()
            .is_some_and(|c| c.contains("root=/dev/xvda ") && c.contains("systemd.hostname=work")),
        "{}",
        work["b_info"]
    );
    assert_eq!(j("sys-firewall")["nics"][0]["backend_domname"], "sys-net");
    assert!(j("vault")["nics"].is_null());

    // `qube run`'s network settings replace the kernel line with the
    // config's own plus the bulkhead.* words, as xl reads them.
    let x = firstboot::qubesxml::QubesXml::parse(&read(&root, "var/lib/qubes/qubes.xml")).unwrap();
    for (q, words) in [
        ("work", "bulkhead.ip=10.137.0.8 bulkhead.gateway=10.138."),
        ("sys-firewall", "bulkhead.netvm=1"),
    ] {
        let cfg = dir.join(format!("{q}.cfg"));
        let own = firstboot::xlcfg::extra_of(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        let net = firstboot::qubenet::of(&x, x.domain(q).unwrap())
            .unwrap()
            .unwrap();
        let line = format!("{own} {}", net.kernel_args());
        let setting = firstboot::xlcfg::setting("extra", &line);
        let got = xl_dry_run_with(&xl, &shim, &cfg, &[setting]).unwrap();
        let cmdline = got["b_info"]["cmdline"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(cmdline.starts_with("root=/dev/xvda "), "{q}: {cmdline}");
        assert!(
            cmdline.ends_with(&net.kernel_args()) && cmdline.contains(words),
            "{q}: {cmdline}"
        );
    }
    assert_eq!(j("sys-usb")["pcidevs"][0]["dev"], 0x14);
}

#[test]
fn xl_refuses_a_broken_config() {
    // The validator must be able to say no.
    let xl = xl_binary();
    let d = tempdir();
    let shim = shim(d.path());
    let root = d.path().join("root");
    machine(&root, "");
    ok(&firstboot(&root, &[], &[]));
    let good = read(&root, "var/lib/qubes/xl/work.cfg");
    for (what, bad) in [
        ("syntax", good.replace("memory = 400", "memory = = 400")),
        (
            "disk spec",
            good.replace("vdev=xvdb", "vdev=xvdb, nonsense"),
        ),
        (
            "pvh without kernel",
            good.replace("kernel = ", "# kernel = "),
        ),
    ] {
        let p = d.path().join("bad.cfg");
        std::fs::write(&p, &bad).unwrap();
        assert!(
            xl_dry_run(&xl, &shim, &p).is_err(),
            "xl accepted a config with broken {what}"
        );
    }
}
