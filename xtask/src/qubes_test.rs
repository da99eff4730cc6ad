//! The installed system's boot, used as its user would: GRUB, Xen's PVH
//! dom0, the LUKS prompt, firstboot, then a login as the dom0 user over the
//! serial console, who checks sudo, finds the autostart qubes running,
//! finds no network interface in dom0, logs into sys-net (starts a resolver
//! for the test) and sys-firewall (pings sys-net), starts `work` and logs
//! into it through its console, pings sys-firewall and resolves a name and
//! pings the answer (sys-net) through the chain, leaves a file in its /home
//! and one outside /rw, shuts it down, starts it again and finds the first
//! but not the second, starts `vault` and finds no interface but lo, and
//! powers the machine off, which stops the qubes before their netvms.
//!
//! Each check prints a marker the test reads back (`=NAME=`, written by
//! `printf` so the typed command itself never contains it); the `time` of
//! each start is shown in the test's output.

use std::time::Duration;

use anyhow::{Result, bail};
use guest_harness::{Bus, Disk, Vm};

use crate::medium::boot;

/// What the user types and when: (marker, keys) pairs, each marker looked
/// for after the previous one.
fn session(passphrase: &str, user: &str, password: &str) -> Vec<(String, String)> {
    let mark = |name: &str| format!("printf '=%s=\\n' {name}");
    let dom0 = format!("{user}@dom0-e2e:~$");
    // When a qube does not start: its unit's journal on the console, and
    // for a step the session cannot go on from, a poweroff, so the test
    // ends with what it saw rather than at its time limit.
    let journal = |q: &str| {
        format!(
            "echo {password} | sudo -S -p '' journalctl -u bulkhead-qube@{q} -n 40 --no-pager -o cat"
        )
    };
    let or_stop = |q: &str| {
        format!(
            "|| {{ {}; echo {password} | sudo -S -p '' poweroff; }}",
            journal(q)
        )
    };
    let work = format!("{user}@work:~$");
    // Every path an xl config names for the kernel exists; so does every
    // disk of a running qube.
    let paths = "sudo sh -c 'for c in /var/lib/qubes/xl/*.cfg; do n=$(basename $c .cfg); \
         for p in $(grep -oE \"^(kernel|ramdisk) = \\\"[^\\\"]*\" $c | cut -d\\\" -f2); do [ -e $p ] || printf \"%s:%s\\n\" LOST \"$n $p\"; done; \
         if xl domid $n >/dev/null 2>&1; then for p in $(grep -oE \"target=[^\\\"]*\" $c | cut -d= -f2); do [ -e $p ] || printf \"%s:%s\\n\" LOST \"$n $p\"; done; fi; done'";
    // A word the qube's kernel line carries (`qube run`'s network settings).
    let word = |w: &str| format!("$(tr ' ' '\\n' </proc/cmdline | sed -n 's/^bulkhead.{w}=//p')");
    // An xl console attached to a qube that already runs shows nothing
    // until a key is pressed: a job in dom0's shell prints the marker once
    // the console surely holds the terminal.
    let attach = |q: &str, m: &str| format!("(sleep 20; {}) & qube console {q}\r", mark(m));
    let sys_net = format!("{user}@sys-net:~$");
    let sys_fw = format!("{user}@sys-firewall:~$");
    let vault = format!("{user}@vault:~$");
    // A resolver for the test in sys-net: every A query is answered with
    // sys-net's own address (argv[1]).
    let resolver = [
        "import socket, sys",
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)",
        "s.bind(('0.0.0.0',53))",
        "while 1:",
        " d,a=s.recvfrom(512)",
        " n=d.index(0,12)+5",
        r" s.sendto(d[:2]+b'\x81\x80'+d[4:6]+b'\x00\x01\x00\x00\x00\x00'+d[12:n]+b'\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04'+socket.inet_aton(sys.argv[1]),a)",
    ]
    .iter()
    .map(|l| format!("\"{l}\""))
    .collect::<Vec<_>>()
    .join(" ");
    let steps: Vec<(&str, String)> = vec![
        ("Please unlock disk", format!("{passphrase}\r")),
        ("dom0-e2e login:", format!("{user}\r")),
        ("Password:", format!("{password}\r")),
        (
            &dom0,
            format!(
                "[ \"$(echo {password} | sudo -S -p '' id -u)\" = 0 ] && {}; {}\r",
                mark("SUDO-OK"),
                mark("A")
            ),
        ),
        (
            "=A=",
            format!(
                "qube list; [ $(qube list | grep -cE '^sys-(net|firewall) .* Running') = 2 ] && {}; {}\r",
                mark("AUTOSTART-OK"),
                mark("B")
            ),
        ),
        // The network: dom0 has none; sys-net redirects its clients' DNS to
        // the resolver started here; sys-firewall reaches sys-net; work
        // reaches both and resolves a name through the chain.
        (
            "=B=",
            format!(
                "[ \"$(ls /sys/class/net)\" = lo ] && {}; {}",
                mark("DOM0-ONLY-LO"),
                attach("sys-net", "NET-ATTACHED")
            ),
        ),
        ("=NET-ATTACHED=", "\r".to_string()),
        ("sys-net login:", format!("{user}\r")),
        (
            &sys_net,
            format!(
                "ip={}; printf 'SYSNET-IP=%s=\\n' $ip; printf '%s\\n' {resolver} > /tmp/dns.py; \
                 sudo sh -c \"nohup python3 /tmp/dns.py $ip >/tmp/dns.log 2>&1 &\"; \
                 echo nameserver $ip | sudo tee /etc/resolv.conf >/dev/null; \
                 for i in $(seq 120); do sudo nft list chain ip bulkhead-qube dns | grep -q \"dnat to $ip\" && break; sleep 1; done; \
                 sudo nft list chain ip bulkhead-qube dns | grep -q \"dnat to $ip\" && {}; {}\r",
                word("ip"),
                mark("DNAT-OK"),
                mark("G")
            ),
        ),
        ("=G=", "\x1d".to_string()),
        (&dom0, attach("sys-firewall", "FW-ATTACHED")),
        ("=FW-ATTACHED=", "\r".to_string()),
        ("sys-firewall login:", format!("{user}\r")),
        (
            &sys_fw,
            format!(
                "gw={}; printf 'FW-GW=%s=\\n' $gw; ping -c1 -W10 $gw >/dev/null && {}; {}\r",
                word("gateway"),
                mark("FW-PING-NET"),
                mark("H")
            ),
        ),
        ("=H=", "\x1d".to_string()),
        (
            &dom0,
            format!(
                "time qube start work && qube console work {}\r",
                or_stop("work")
            ),
        ),
        ("work login:", format!("{user}\r")),
        (
            &work,
            format!(
                "systemd-analyze; systemd-analyze blame --no-pager | head -12; [ $(hostname) = work ] && {}; sudo -n true && {}; echo kept > ~/e2e-kept; echo junk | sudo tee /etc/e2e-junk >/dev/null; sync; \
                 gw={}; ping -c1 -W10 $gw >/dev/null && {}; r=$(getent ahostsv4 probe.bulkhead.test | awk '{{print $1; exit}}'); \
                 printf 'RESOLVED=%s=\\n' $r; ping -c1 -W10 $r >/dev/null && printf 'PINGED=%s=\\n' $r; {}\r",
                mark("HOSTNAME-OK"),
                mark("QUBE-SUDO-OK"),
                word("gateway"),
                mark("WORK-PING-FW"),
                mark("C")
            ),
        ),
        // Ctrl-] leaves xl console
        ("=C=", "\x1d".to_string()),
        (
            &dom0,
            format!(
                "{paths}; {}; time qube shutdown work; qube list | grep ^work; {}\r",
                mark("PATHS-CHECKED"),
                mark("D")
            ),
        ),
        (
            "=D=",
            format!(
                "time qube start work && qube console work {}\r",
                or_stop("work")
            ),
        ),
        ("work login:", format!("{user}\r")),
        (
            &work,
            format!(
                "[ \"$(cat ~/e2e-kept)\" = kept ] && {}; [ ! -e /etc/e2e-junk ] && {}; {}\r",
                mark("HOME-KEPT"),
                mark("ROOT-RESET"),
                mark("E")
            ),
        ),
        ("=E=", "\x1d".to_string()),
        (
            &dom0,
            format!(
                "time qube start vault || {}; qube list | grep -qE '^vault .* Running' && {}; qube list; qube console vault\r",
                journal("vault"),
                mark("VAULT-OK"),
            ),
        ),
        ("vault login:", format!("{user}\r")),
        (
            &vault,
            format!(
                "[ \"$(ls /sys/class/net)\" = lo ] && [ -z \"$(ip route)\" ] && {}; {}\r",
                mark("VAULT-NO-NET"),
                mark("F")
            ),
        ),
        ("=F=", "\x1d".to_string()),
        (&dom0, format!("echo {password} | sudo -S -p '' poweroff\r")),
    ];
    steps.into_iter().map(|(m, k)| (m.to_string(), k)).collect()
}

/// What must be on the console, in the words the checks print.
const CHECKS: &[(&str, &str)] = &[
    ("GRUB's Xen entry", "Loading Xen"),
    ("the passphrase prompt", "Please unlock disk"),
    ("firstboot finished", "firstboot: complete:"),
    ("sudo for the dom0 user", "=SUDO-OK="),
    ("sys-net and sys-firewall running", "=AUTOSTART-OK="),
    ("work's hostname", "=HOSTNAME-OK="),
    ("sudo inside work", "=QUBE-SUDO-OK="),
    ("/home kept across a restart", "=HOME-KEPT="),
    ("root reset by a restart", "=ROOT-RESET="),
    ("vault running", "=VAULT-OK="),
    ("dom0 has no interface but lo", "=DOM0-ONLY-LO="),
    ("sys-net redirects DNS to its resolver", "=DNAT-OK="),
    ("sys-firewall pings sys-net", "=FW-PING-NET="),
    ("work pings sys-firewall", "=WORK-PING-FW="),
    ("vault has no interface, no route", "=VAULT-NO-NET="),
];

/// The address a session printed as `KEY=VALUE=` (a line may start with
/// the shell's escape sequences; the typed `KEY=%s=` is not a value).
fn printed<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let tag = format!("{key}=");
    text.lines().find_map(|l| {
        let (_, rest) = l.split_once(tag.as_str())?;
        let (v, _) = rest.split_once('=')?;
        (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')).then_some(v)
    })
}

/// Boots the installed `disk` and runs the session. `passphrase` unlocks
/// it; `user`/`password` are the dom0 user the install made.
pub fn run(disk: &std::path::Path, passphrase: &str, user: &str, password: &str) -> Result<()> {
    let mut vm = Vm::new()
        // Xen gives dom0 up to dom0_mem's max (4 GiB, Qubes' setting); the
        // rest is the qubes' without ballooning dom0 down, which works
        // but too slowly under emulation for xl's wait. With 6 GiB, xl
        // found no memory for vault next to sys-net, sys-firewall and work
        // ("failed to free memory for the domain").
        .memory_mib(8192)
        // One CPU: with two, Xen under TCG's emulated AMD-V triple-faulted
        // dom0 or a qube at random once qubes ran (six runs of this
        // session); with one, none did.
        .smp(1)
        // Without XSAVE: under TCG, Xen's PVH dom0 saw corrupted FPU state
        // (glibc's malloc aborting in cryptsetup, a triple fault).
        .cpu("max,-rdtscp,-avx,-avx2,-avx512f,-xsave")
        .amd_iommu()
        .no_vga()
        .disk(Disk::new(disk).bus(Bus::Virtio))
        .wait_for("reboot: Power down")
        .timeout(Duration::from_secs(3600));
    for (marker, keys) in session(passphrase, user, password) {
        vm = vm.send_when(&marker, keys);
    }
    let o = boot("installed system: Xen, firstboot, qubes", vm)?;
    let text = o.serial.replace('\r', "");
    let mut missing = Vec::new();
    for (what, needle) in CHECKS {
        let seen = text.contains(needle);
        eprintln!(
            "      {what:<34} {}",
            if seen { "seen" } else { "NOT seen" }
        );
        if !seen {
            missing.push(*what);
        }
    }
    for l in text.lines().filter(|l| {
        l.contains("firstboot: complete")
            || l.contains("firstboot: [")
            || l.starts_with("real\t")
            || l.starts_with("LOST:")
            || (l.contains("Stopped") && l.contains("Bulkhead qube"))
    }) {
        eprintln!("      | {}", l.trim_end());
    }
    let lost: Vec<&str> = text.lines().filter(|l| l.starts_with("LOST:")).collect();
    // At poweroff systemd stops each qube before its netvm.
    let stopped = |q: &str| {
        text.lines().position(|l| {
            l.contains("Stopped") && l.trim_end().ends_with(&format!("Bulkhead qube {q}."))
        })
    };
    match (stopped("sys-firewall"), stopped("sys-net")) {
        (Some(fw), Some(net)) if fw < net => {
            eprintln!("      {:<34} seen", "qubes stopped before their netvm")
        }
        other => {
            eprintln!(
                "      {:<34} NOT seen ({other:?})",
                "qubes stopped before their netvm"
            );
            missing.push("sys-firewall stopped before sys-net at poweroff");
        }
    }
    // One address all along: sys-net's own, sys-firewall's gateway, what
    // work's name lookup returned through the chain, and what answered
    // work's ping.
    let addrs: Vec<(&str, Option<&str>)> = ["SYSNET-IP", "FW-GW", "RESOLVED", "PINGED"]
        .iter()
        .map(|k| (*k, printed(&text, k)))
        .collect();
    eprintln!("      sys-net's address as seen: {addrs:?}");
    let first = addrs[0].1;
    if first.is_none() || addrs.iter().any(|(_, v)| *v != first) {
        missing.push("work resolving and pinging sys-net through sys-firewall");
    }
    if !text.contains("=PATHS-CHECKED=") {
        missing.push("the xl configs' paths checked");
    }
    if !missing.is_empty() || !lost.is_empty() {
        bail!(
            "the installed system did not show {}{}; console in target/qemu-logs/",
            missing.join(", "),
            if lost.is_empty() {
                String::new()
            } else {
                format!(
                    "; paths the xl configs name are missing: {}",
                    lost.join(" ")
                )
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_addresses_are_read_back_and_the_typed_command_is_not_one() {
        let text =
            "$ ip=...; printf 'SYSNET-IP=%s=\\n' $ip\n\x1b[?2004lSYSNET-IP=10.137.0.2=\nFW-GW==\n";
        assert_eq!(printed(text, "SYSNET-IP"), Some("10.137.0.2"));
        assert_eq!(printed(text, "FW-GW"), None);
        assert_eq!(printed(text, "PINGED"), None);
    }

    #[test]
    fn no_typed_command_contains_a_marker_it_waits_for() {
        let s = session("pass", "alice", "pw");
        for (_, keys) in &s {
            for (_, needle) in CHECKS {
                if needle.starts_with('=') {
                    assert!(!keys.contains(needle), "{keys:?} types {needle}");
                }
            }
            assert!(!keys.contains("LOST:"));
        }
        for (marker, _) in &s {
            if marker.starts_with('=') {
                assert!(s.iter().all(|(_, k)| !k.contains(marker.as_str())));
            }
        }
    }
}
