//! The template's `qube-net` in a netvm, run for real in a private network
//! and mount namespace (unshare): the kernel line and resolv.conf it reads
//! are bind-mounted over /proc/cmdline and /etc/resolv.conf, and the
//! host's nftables accepts or refuses the ruleset it loads. The qube side
//! (netfront, routes) needs a Xen guest: the installed system's boot test.
//! Needs root (as `cargo xtask test` runs) and nftables.

use std::path::Path;
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/template/qube-net");

/// Runs `body` (sh) in fresh namespaces with `cmdline` and `resolv` in place.
fn in_namespace(dir: &Path, cmdline: &str, resolv: &str, body: &str) -> String {
    assert!(
        Path::new("/usr/sbin/nft").exists(),
        "nft is needed: apt-get install nftables (listed in ci/host-packages.txt)"
    );
    std::fs::write(dir.join("cmdline"), format!("{cmdline}\n")).unwrap();
    std::fs::write(dir.join("resolv"), resolv).unwrap();
    let script = format!(
        "set -e; mount --bind {d}/cmdline /proc/cmdline; mount --bind {d}/resolv /etc/resolv.conf; {body}",
        d = dir.display()
    );
    let o = Command::new("unshare")
        .args(["--mount", "--net", "sh", "-c", &script])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("unshare (util-linux) runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{body}: {}\n{out}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn a_netvm_forwards_masquerades_and_sends_dns_to_its_own_resolvers() {
    let d = tempfile::tempdir().unwrap();
    let out = in_namespace(
        d.path(),
        "root=/dev/xvda ro bulkhead.ip=10.137.0.2 bulkhead.netvm=1",
        "nameserver 192.0.2.53\nnameserver 10.139.1.1\nnameserver 198.51.100.9\n",
        &format!("{SCRIPT} up; cat /proc/sys/net/ipv4/ip_forward; nft list table ip bulkhead-qube"),
    );
    assert!(
        out.contains("qube-net: forwarding for client qubes\n1\n"),
        "{out}"
    );
    for rule in [
        // clients out by the uplink, never to each other
        "policy drop;",
        "iifname \"vif*\" oifname != \"vif*\" accept",
        "masquerade",
        // from clients only replies, ping and their (redirected) DNS
        "ct status dnat accept",
        "meta l4proto icmp accept",
        // Qubes' DNS addresses to this netvm's own resolvers, not to itself
        "ip daddr 10.139.1.1 udp dport 53 dnat to 192.0.2.53",
        "ip daddr 10.139.1.2 udp dport 53 dnat to 198.51.100.9",
        "ip daddr 10.139.1.1 tcp dport 53 dnat to 192.0.2.53",
    ] {
        assert!(out.contains(rule), "{rule} not in\n{out}");
    }
}

#[test]
fn the_dns_rules_follow_resolv_conf_and_a_netvm_behind_a_netvm_adds_none() {
    let d = tempfile::tempdir().unwrap();
    // sys-net's resolver changes (NetworkManager rewrote resolv.conf); one
    // server serves both addresses; loading twice replaces, never stacks.
    let out = in_namespace(
        d.path(),
        "bulkhead.ip=10.137.0.2 bulkhead.netvm=1",
        "nameserver 192.0.2.53\n",
        &format!(
            "{SCRIPT} up >/dev/null; echo 'nameserver 203.0.113.1' > /etc/resolv.conf; \
             {SCRIPT} dns; {SCRIPT} dns; nft list table ip bulkhead-qube"
        ),
    );
    assert!(!out.contains("192.0.2.53"), "{out}");
    assert_eq!(out.matches("dnat to 203.0.113.1").count(), 4, "{out}");
    assert_eq!(out.matches("masquerade").count(), 1, "{out}");
    // sys-firewall: its resolvers are Qubes' own addresses, which its
    // default route carries on to sys-net: no redirection here.
    let out = in_namespace(
        d.path(),
        "bulkhead.ip=10.138.0.4 bulkhead.netvm=1",
        "nameserver 10.139.1.1\nnameserver 10.139.1.2\n",
        &format!("{SCRIPT} dns; nft list chain ip bulkhead-qube dns"),
    );
    assert!(!out.contains("dnat"), "{out}");
    // A qube that serves no one loads nothing.
    let out = in_namespace(
        d.path(),
        "bulkhead.ip=10.137.0.8",
        "",
        &format!("{SCRIPT} dns; nft list ruleset"),
    );
    assert!(!out.contains("bulkhead-qube"), "{out}");
}
