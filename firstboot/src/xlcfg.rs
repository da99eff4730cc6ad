//! A Xen domain configuration per qube, in xl's config syntax (xl.cfg(5)).
//!
//! Qubes itself renders a libvirt XML (templates/libvirt/xen.xml) at start
//! time; Bulkhead starts qubes with `xl create`, so it writes the equivalent
//! xl config once at creation: Qubes' kernel command line
//! (qubes/config.py `kernelopts_common` + `kernelopts`) with two changes,
//! the root is the root volume itself (`root=/dev/xvda`: Qubes' own VM
//! initramfs makes /dev/mapper/dmroot, ours, iso-builder's vmkit, mounts
//! xvda) and the hostname is the qube's name (`systemd.hostname=`, which
//! Qubes sets through qubesdb); the running volume of each disk as lvm.py
//! names it (xvda root, xvdb private, xvdc volatile; no xvdd, since the
//! kernel is the template's own and its modules are in the root, see
//! vmkit), each served through dom0's `block-bulkhead` hotplug script
//! (firstboot/xen/), a routed vif to the netvm with Qubes' addressing (10.137.0.QID, DispVMs 10.138.x.y by dispid; MAC
//! 00:16:3e:5e:6c:QID) and PCI passthrough for sys-net and sys-usb, whose
//! HVM device model runs in a stub domain as in Qubes. The qube's own view
//! of its network (address, gateway, DNS) is not in the config: `qube run`
//! adds it to the kernel line at each start ([`crate::qubenet`]).

use std::fmt::Write as _;

use crate::model::{Class, VirtMode, VolumeConfig};

/// Qubes' `kernelopts_common` (qubes/config.py), with the root on xvda.
const KERNELOPTS_COMMON: &str = "root=/dev/xvda ro nomodeset console=hvc0 rd_NO_PLYMOUTH rd.plymouth.enable=0 plymouth.enable=0 xen_privcmd.unrestricted";

/// What the config is made from.
pub struct XlInput<'a> {
    pub name: &'a str,
    pub class: Class,
    pub label: &'a str,
    pub uuid: &'a str,
    pub qid: u32,
    pub dispid: Option<u32>,
    pub virt_mode: VirtMode,
    pub memory: u32,
    pub vcpus: u32,
    pub kernel: Option<&'a str>,
    pub volumes: &'a [VolumeConfig],
    /// The qube providing the network, if any.
    pub netvm: Option<&'a str>,
    pub pci: &'a [String],
    /// Words after Qubes' own on the kernel line (settings' `qube_kernel_args`).
    pub kernel_args: &'a str,
}

/// Qubes' IP for a qube on its netvm.
pub fn ip(qid: u32, dispid: Option<u32>) -> String {
    match dispid {
        Some(d) => format!("10.138.{}.{}", (d >> 8) & 0xff, d & 0xff),
        None => format!("10.137.0.{qid}"),
    }
}

/// Qubes' MAC for a qube.
pub fn mac(qid: u32) -> String {
    format!("00:16:3e:5e:6c:{:02x}", qid & 0xff)
}

/// A string in xl's config syntax.
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `KEY="VALUE"`, as `xl create CONFIG KEY=VALUE` takes a setting that
/// replaces the config's own.
pub fn setting(key: &str, value: &str) -> String {
    format!("{key}={}", quote(value))
}

/// The kernel command line (`extra`) of a config [`render`] wrote.
pub fn extra_of(cfg: &str) -> Option<String> {
    let v = cfg.lines().find_map(|l| l.strip_prefix("extra = \""))?;
    let v = v.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out)
}

/// Renders the config.
pub fn render(x: &XlInput<'_>) -> String {
    let mut s = String::new();
    let q = quote;
    let _ = writeln!(
        s,
        "# Xen domain configuration of qube {} ({}, label {}), written by bulkhead firstboot.",
        x.name,
        x.class.as_str(),
        x.label
    );
    let _ = writeln!(s, "name = {}", q(x.name));
    let _ = writeln!(s, "uuid = {}", q(x.uuid));
    let _ = writeln!(s, "type = {}", q(x.virt_mode.as_str()));
    // Qubes balances memory between qubes (qmemman growing each from
    // `memory` towards maxmem, 4000 MiB). Without qmemman nothing would
    // ever give a qube more, and a PVH guest whose maxmem exceeds its
    // memory first balloons the difference away (over a minute under
    // emulation): each qube gets `memory` and no more.
    let _ = writeln!(s, "memory = {}", x.memory);
    let _ = writeln!(s, "maxmem = {}", x.memory);
    let _ = writeln!(s, "vcpus = {}", x.vcpus);
    if let Some(k) = x.kernel {
        let dir = format!("{}/{k}", names::VM_KERNELS_ABS);
        let _ = writeln!(s, "kernel = {}", q(&format!("{dir}/vmlinuz")));
        let _ = writeln!(s, "ramdisk = {}", q(&format!("{dir}/initramfs")));
        let mut extra = if x.pci.is_empty() {
            format!(
                "{KERNELOPTS_COMMON} swiotlb=2048 systemd.hostname={}",
                x.name
            )
        } else {
            format!("{KERNELOPTS_COMMON} systemd.hostname={}", x.name)
        };
        for w in x.kernel_args.split_whitespace() {
            extra.push(' ');
            extra.push_str(w);
        }
        let _ = writeln!(s, "extra = {}", q(&extra));
    }
    if x.virt_mode == VirtMode::Hvm {
        let _ = writeln!(s, "device_model_version = \"qemu-xen\"");
        let _ = writeln!(s, "device_model_stubdomain_override = 1");
        let _ = writeln!(s, "serial = \"pty\"");
    }
    let mut disks = Vec::new();
    for v in x.volumes {
        let vdev = match v.name {
            "root" => "xvda",
            "private" => "xvdb",
            "volatile" => "xvdc",
            // the kernel volume (pool linux-kernel) has no modules.img
            _ => continue,
        };
        disks.push(format!(
            "format=raw, vdev={vdev}, access=rw, script={}, target=/dev/{}",
            names::QUBE_BLOCK_SCRIPT_NAME,
            v.running_vid()
        ));
    }
    list(&mut s, "disk", &disks);
    if let Some(net) = x.netvm {
        list(
            &mut s,
            "vif",
            &[format!(
                "mac={}, ip={}, backend={net}, script={}",
                mac(x.qid),
                ip(x.qid, x.dispid),
                names::VIF_SCRIPT_NAME
            )],
        );
    }
    if !x.pci.is_empty() {
        let pci: Vec<String> = x.pci.iter().map(|b| format!("0000:{b}")).collect();
        list(&mut s, "pci", &pci);
    }
    let _ = writeln!(s, "on_poweroff = \"destroy\"");
    let _ = writeln!(s, "on_reboot = \"destroy\"");
    let _ = writeln!(s, "on_crash = \"destroy\"");
    s
}

fn list(s: &mut String, key: &str, items: &[String]) {
    let _ = writeln!(s, "{key} = [");
    for i in items {
        let _ = writeln!(s, "    \"{i}\",");
    }
    let _ = writeln!(s, "]");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_qubes() {
        assert_eq!(ip(8, None), "10.137.0.8");
        assert_eq!(ip(8, Some(0x1234)), "10.138.18.52");
        assert_eq!(mac(26), "00:16:3e:5e:6c:1a");
    }

    #[test]
    fn the_kernel_line_reads_back_as_written() {
        for v in ["root=/dev/xvda ro", r#"a "quoted" \ word"#, ""] {
            let cfg = format!("name = \"q\"\nextra = {}\nvcpus = 2\n", quote(v));
            assert_eq!(extra_of(&cfg).as_deref(), Some(v));
        }
        assert_eq!(extra_of("name = \"q\"\n"), None);
        assert_eq!(setting("extra", r#"x "y""#), r#"extra="x \"y\"""#);
    }
}
