//! The network a qube is given when it starts, computed from qubes.xml as
//! qubes-core-admin computes it (qubes/vm/mix/net.py): its address
//! (10.137.0.QID, a DispVM's 10.138.x.y by dispid), its gateway (its
//! netvm's address), Qubes' two virtual DNS addresses, and whether it
//! serves clients. Qubes hands these to the qube through qubesdb
//! (/qubes-ip, /qubes-gateway, /qubes-primary-dns, ...). Bulkhead has no
//! qubesdb, so `qube run` puts them on the qube's kernel command line as
//! `bulkhead.*` words, read at boot by the template's `qube-net` and by a
//! netvm's vif hotplug script. They are computed at each start, as in
//! Qubes, so a netvm made after its client still gives it its gateway.

use crate::Error;
use crate::offline::effective_netvm;
use crate::qubesxml::{Domain, QubesXml};
use crate::xlcfg;

/// Qubes' virtual DNS servers (qubes/vm/mix/net.py `dns`); each netvm
/// sends what reaches them on to its own resolvers.
pub const DNS: [&str; 2] = ["10.139.1.1", "10.139.1.2"];

/// What a networked qube is told at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QubeNet {
    /// Its own address: on its uplink, and on its clients' vifs when it
    /// serves them (their gateway).
    pub ip: String,
    /// Its netvm's address; none for a netvm at the end of the chain.
    pub gateway: Option<String>,
    /// It provides network to other qubes.
    pub serves: bool,
}

/// A qube's address by Qubes' scheme, from its qid (and a DispVM's dispid).
pub fn address(d: &Domain) -> Option<String> {
    let qid = d.qid()?;
    let dispid = if d.class == "DispVM" {
        Some(d.prop("dispid").and_then(|v| v.parse().ok()).unwrap_or(qid))
    } else {
        None
    };
    Some(xlcfg::ip(qid, dispid))
}

/// The network of `d`, or None when it has neither a netvm nor clients.
pub fn of(x: &QubesXml, d: &Domain) -> Result<Option<QubeNet>, Error> {
    let serves = d.prop("provides_network") == Some("True");
    let netvm = effective_netvm(x, d);
    if netvm.is_none() && !serves {
        return Ok(None);
    }
    let name = d.name().to_string();
    let ip = address(d)
        .ok_or_else(|| Error::Xml(format!("{name} has no qid: its address cannot be given")))?;
    let gateway = match netvm {
        Some(n) => {
            let nd = x.domain(&n).ok_or_else(|| {
                Error::Missing(format!(
                    "{name}'s netvm {n} is not in qubes.xml; give it an existing netvm"
                ))
            })?;
            Some(address(nd).ok_or_else(|| {
                Error::Xml(format!("{n} has no qid: {name}'s gateway cannot be given"))
            })?)
        }
        None => None,
    };
    Ok(Some(QubeNet {
        ip,
        gateway,
        serves,
    }))
}

impl QubeNet {
    /// The words for the qube's kernel command line.
    pub fn kernel_args(&self) -> String {
        let mut s = format!("bulkhead.ip={}", self.ip);
        if let Some(g) = &self.gateway {
            s.push_str(&format!(
                " bulkhead.gateway={g} bulkhead.dns={}",
                DNS.join(",")
            ));
        }
        if self.serves {
            s.push_str(" bulkhead.netvm=1");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xml() -> QubesXml {
        QubesXml::parse(
            r#"<qubes>
  <properties><property name="default_netvm">sys-firewall</property></properties>
  <domains>
    <domain id="domain-1" class="AppVM"><properties>
      <property name="qid">1</property><property name="name">sys-net</property>
      <property name="netvm"></property><property name="provides_network">True</property>
    </properties></domain>
    <domain id="domain-2" class="AppVM"><properties>
      <property name="qid">2</property><property name="name">default-dvm</property>
      <property name="template_for_dispvms">True</property>
    </properties></domain>
    <domain id="domain-4" class="DispVM"><properties>
      <property name="qid">4</property><property name="name">sys-firewall</property>
      <property name="dispid">4</property><property name="template">default-dvm</property>
      <property name="netvm">sys-net</property><property name="provides_network">True</property>
    </properties></domain>
    <domain id="domain-8" class="AppVM"><properties>
      <property name="qid">8</property><property name="name">work</property>
    </properties></domain>
    <domain id="domain-9" class="AppVM"><properties>
      <property name="qid">9</property><property name="name">vault</property>
      <property name="netvm"></property>
    </properties></domain>
    <domain id="domain-10" class="AppVM"><properties>
      <property name="qid">10</property><property name="name">lost</property>
      <property name="netvm">sys-gone</property>
    </properties></domain>
  </domains>
</qubes>"#,
        )
        .unwrap()
    }

    fn net(x: &QubesXml, n: &str) -> Result<Option<QubeNet>, Error> {
        of(x, x.domain(n).unwrap())
    }

    #[test]
    fn the_chain_gets_qubes_addresses_and_gateways() {
        let x = xml();
        let work = net(&x, "work").unwrap().unwrap();
        assert_eq!(
            work.kernel_args(),
            "bulkhead.ip=10.137.0.8 bulkhead.gateway=10.138.0.4 bulkhead.dns=10.139.1.1,10.139.1.2"
        );
        let fw = net(&x, "sys-firewall").unwrap().unwrap();
        assert_eq!(
            fw.kernel_args(),
            "bulkhead.ip=10.138.0.4 bulkhead.gateway=10.137.0.1 bulkhead.dns=10.139.1.1,10.139.1.2 bulkhead.netvm=1"
        );
        // sys-net: an address for its clients' vifs, no gateway of its own.
        let sn = net(&x, "sys-net").unwrap().unwrap();
        assert_eq!(sn.kernel_args(), "bulkhead.ip=10.137.0.1 bulkhead.netvm=1");
        // the DispVM template takes the default netvm
        assert_eq!(
            net(&x, "default-dvm").unwrap().unwrap().gateway.as_deref(),
            Some("10.138.0.4")
        );
    }

    #[test]
    fn a_qube_without_netvm_gets_nothing_and_a_lost_netvm_is_an_error() {
        let x = xml();
        assert_eq!(net(&x, "vault").unwrap(), None);
        let e = net(&x, "lost").unwrap_err().to_string();
        assert!(
            e.contains("lost's netvm sys-gone is not in qubes.xml"),
            "{e}"
        );
    }
}
