//! A client of a running qubesd: the Admin API over its Unix socket
//! (`/var/run/qubesd.sock`), as qubes-core-admin's `qubes/api/__init__.py`
//! frames it and qubesadmin's `QubesLocal` speaks it.
//!
//! Request: `METHOD+ARG dom0 name DEST\0PAYLOAD`, then end of stream.
//! Answer: `0\0DATA` on success, `2\0EXCTYPE\0TRACEBACK\0MESSAGE\0` when
//! qubesd raised (events, `1\0...`, are not used here).
//!
//! Behind the same [`Backend`] trait as the offline backend; each method
//! asks qubesd what exists first (`admin.vm.List`, `admin.pool.List`) and
//! only creates what is missing. Properties are set to their target values
//! (setting a value twice is harmless). qubesd does not create LVM thin
//! pools, so `ensure_pool` makes the LV with the given [`Storage`] and
//! registers it with `admin.pool.Add+lvm_thin`. PCI devices use Qubes
//! 4.2's `admin.vm.device.pci.Attach` (4.3 renamed it `Assign`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::backend::{Backend, Ctx, Notes, QubeRow};
use crate::model::{Class, NetVm, QubeSpec};
use crate::settings::PoolSettings;
use crate::storage::Storage;

/// qubesd's socket in dom0.
pub const QUBESD_SOCKET: &str = "/var/run/qubesd.sock";

/// One connection per call, as qubesd expects.
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
        }
    }

    /// Calls `method` (with `+arg` when given) on `dest` and returns the data.
    pub fn call(
        &self,
        method: &str,
        arg: Option<&str>,
        dest: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let call = match arg {
            Some(a) => format!("{method}+{a}"),
            None => method.to_string(),
        };
        let mut s = UnixStream::connect(&self.socket).map_err(|e| {
            Error::Api(format!(
                "cannot connect to qubesd at {}: {e} (is qubesd running?)",
                self.socket.display()
            ))
        })?;
        let mut req = format!("{call} dom0 name {dest}\0").into_bytes();
        req.extend_from_slice(payload);
        s.write_all(&req)
            .and_then(|()| s.shutdown(std::net::Shutdown::Write))
            .map_err(|e| Error::Api(format!("sending {call} to {dest}: {e}")))?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)
            .map_err(|e| Error::Api(format!("reading the answer to {call}: {e}")))?;
        parse_response(&call, &resp)
    }

    fn text(
        &self,
        method: &str,
        arg: Option<&str>,
        dest: &str,
        payload: &str,
    ) -> Result<String, Error> {
        let b = self.call(method, arg, dest, payload.as_bytes())?;
        String::from_utf8(b).map_err(|_| Error::Api(format!("{method}: answer is not UTF-8")))
    }

    /// `admin.vm.List`: name -> (class, state).
    pub fn vm_list(&self) -> Result<Vec<(String, String, String)>, Error> {
        let t = self.text("admin.vm.List", None, "dom0", "")?;
        Ok(t.lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                let name = f.next()?.to_string();
                let mut class = String::new();
                let mut state = String::new();
                for kv in f {
                    match kv.split_once('=') {
                        Some(("class", v)) => class = v.into(),
                        Some(("state", v)) => state = v.into(),
                        _ => {}
                    }
                }
                Some((name, class, state))
            })
            .collect())
    }

    /// `admin.vm.property.Get`: the value (after `default=... type=... `).
    pub fn vm_property(&self, vm: &str, prop: &str) -> Result<String, Error> {
        let t = self.text("admin.vm.property.Get", Some(prop), vm, "")?;
        // "default=True type=vm sys-firewall"
        Ok(t.splitn(3, ' ').nth(2).unwrap_or_default().to_string())
    }
}

/// Splits an answer into data or the exception qubesd raised.
pub fn parse_response(call: &str, resp: &[u8]) -> Result<Vec<u8>, Error> {
    match resp {
        [b'0', 0, data @ ..] => Ok(data.to_vec()),
        [b'2', 0, rest @ ..] => {
            let mut f = rest.split(|&b| b == 0);
            let exc_type = String::from_utf8_lossy(f.next().unwrap_or_default()).into_owned();
            let _traceback = f.next();
            let message = String::from_utf8_lossy(f.next().unwrap_or_default()).into_owned();
            Err(Error::ApiException {
                call: call.into(),
                exc_type,
                message,
            })
        }
        [] => Err(Error::Api(format!(
            "{call}: qubesd closed the connection without an answer (refused by policy, or a framing error)"
        ))),
        _ => Err(Error::Api(format!(
            "{call}: unexpected answer header {:?}",
            String::from_utf8_lossy(&resp[..resp.len().min(8)])
        ))),
    }
}

/// The Admin API backend.
pub struct AdminApi {
    client: Client,
    storage: Box<dyn Storage>,
}

impl AdminApi {
    pub fn new(socket: &Path, storage: Box<dyn Storage>) -> AdminApi {
        AdminApi {
            client: Client::new(socket),
            storage,
        }
    }

    fn vm_set(&self, vm: &str, prop: &str, value: &str) -> Result<(), Error> {
        self.client
            .call("admin.vm.property.Set", Some(prop), vm, value.as_bytes())
            .map(drop)
    }
}

impl Backend for AdminApi {
    fn describe(&self) -> String {
        format!(
            "Admin API backend: qubesd at {} ({})",
            self.client.socket.display(),
            self.storage.describe()
        )
    }

    fn init_store(&mut self, _ctx: &Ctx<'_>) -> Result<Notes, Error> {
        let vms = self.client.vm_list()?;
        if !vms.iter().any(|(n, _, _)| n == "dom0") {
            return Err(Error::Api("qubesd lists no dom0".into()));
        }
        Ok(vec!["qubesd has its store; nothing to initialise".into()])
    }

    fn ensure_pool(&mut self, ctx: &Ctx<'_>, pool: &PoolSettings) -> Result<Notes, Error> {
        let mut notes = Vec::new();
        if !self.storage.pool_exists(&pool.volume_group, &pool.name)? {
            self.storage
                .create_pool(&pool.volume_group, &pool.name, pool.percent_free)?;
        }
        ctx.point("lvm")?;
        let pools = self.client.text("admin.pool.List", None, "dom0", "")?;
        if pools.lines().any(|p| p == pool.name) {
            notes.push(format!("pool {} is registered", pool.name));
        } else {
            let payload = format!(
                "name={}\nvolume_group={}\nthin_pool={}\nrevisions_to_keep={}\n",
                pool.name, pool.volume_group, pool.name, pool.revisions_to_keep
            );
            self.client.call(
                "admin.pool.Add",
                Some("lvm_thin"),
                "dom0",
                payload.as_bytes(),
            )?;
        }
        self.client.call(
            "admin.property.Set",
            Some("default_pool"),
            "dom0",
            pool.name.as_bytes(),
        )?;
        Ok(notes)
    }

    fn ensure_qube(&mut self, ctx: &Ctx<'_>, spec: &QubeSpec) -> Result<Notes, Error> {
        let mut notes = Vec::new();
        let vms = self.client.vm_list()?;
        match vms.iter().find(|(n, _, _)| *n == spec.name) {
            Some((_, class, _)) if class != spec.class.as_str() => {
                return Err(Error::Conflict(format!(
                    "a qube named {} already exists as {class} (wanted {}); remove or rename it, then rerun firstboot --resume",
                    spec.name,
                    spec.class.as_str()
                )));
            }
            Some(_) => notes.push(format!("{} exists", spec.name)),
            None => {
                if spec.class == Class::TemplateVM {
                    return Err(Error::Missing(format!(
                        "template {} is not installed; with a running qubesd install it with qvm-template",
                        spec.name
                    )));
                }
                let payload = format!("name={} label={}", spec.name, spec.label.name());
                self.client.call(
                    &format!("admin.vm.Create.{}", spec.class.as_str()),
                    spec.template.as_deref(),
                    "dom0",
                    payload.as_bytes(),
                )?;
            }
        }
        ctx.point("created")?;
        let b = |v: bool| if v { "True" } else { "False" };
        match &spec.netvm {
            NetVm::Default => {}
            NetVm::None => self.vm_set(&spec.name, "netvm", "")?,
            NetVm::Qube(q) => self.vm_set(&spec.name, "netvm", q)?,
        }
        if let Some(v) = spec.virt_mode {
            self.vm_set(&spec.name, "virt_mode", v.as_str())?;
        }
        if let Some(m) = spec.memory {
            self.vm_set(&spec.name, "memory", &m.to_string())?;
        }
        if spec.provides_network {
            self.vm_set(&spec.name, "provides_network", b(true))?;
        }
        if spec.autostart {
            self.vm_set(&spec.name, "autostart", b(true))?;
        }
        if spec.template_for_dispvms {
            self.vm_set(&spec.name, "template_for_dispvms", b(true))?;
        }
        for (k, v) in &spec.features {
            self.client
                .call("admin.vm.feature.Set", Some(k), &spec.name, v.as_bytes())?;
        }
        ctx.point("properties")?;
        if !spec.pci.is_empty() {
            let attached = self
                .client
                .text("admin.vm.device.pci.List", None, &spec.name, "")?;
            for bdf in &spec.pci {
                let ident = bdf.replace(':', "_");
                if attached
                    .lines()
                    .any(|l| l.starts_with(&format!("dom0+{ident} ")))
                {
                    continue;
                }
                let mut payload = String::from("persistent=True");
                if spec.pci_no_strict_reset {
                    payload += " no-strict-reset=True";
                }
                self.client.call(
                    "admin.vm.device.pci.Attach",
                    Some(&format!("dom0+{ident}")),
                    &spec.name,
                    payload.as_bytes(),
                )?;
            }
        }
        Ok(notes)
    }

    fn set_global(&mut self, ctx: &Ctx<'_>, property: &str, value: &str) -> Result<Notes, Error> {
        ctx.point("write")?;
        self.client.call(
            "admin.property.Set",
            Some(property),
            "dom0",
            value.as_bytes(),
        )?;
        Ok(Vec::new())
    }

    fn start(&mut self, ctx: &Ctx<'_>, name: &str) -> Result<Notes, Error> {
        let vms = self.client.vm_list()?;
        ctx.point("volumes")?;
        match vms.iter().find(|(n, _, _)| n == name) {
            None => Err(Error::Missing(format!(
                "cannot start {name}: qubesd does not know it"
            ))),
            Some((_, _, state)) if state == "Running" => {
                Ok(vec![format!("{name} is already running")])
            }
            Some(_) => {
                self.client.call("admin.vm.Start", None, name, b"")?;
                Ok(Vec::new())
            }
        }
    }

    fn list(&mut self) -> Result<Vec<QubeRow>, Error> {
        let mut rows = Vec::new();
        for (name, class, state) in self.client.vm_list()? {
            let opt = |v: String| (!v.is_empty()).then_some(v);
            let (template, netvm) = if class == "AdminVM" {
                (None, None)
            } else {
                let template = if class == "TemplateVM" {
                    None
                } else {
                    opt(self.client.vm_property(&name, "template")?)
                };
                (template, opt(self.client.vm_property(&name, "netvm")?))
            };
            rows.push(QubeRow {
                label: self.client.vm_property(&name, "label")?,
                name,
                class,
                template,
                netvm,
                state,
            });
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_split() {
        assert_eq!(parse_response("x", b"0\0hello").unwrap(), b"hello");
        let e = parse_response(
            "admin.vm.Start",
            b"2\0QubesVMNotFoundError\0Traceback...\0No such domain: 'x'\0",
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("QubesVMNotFoundError") && m.contains("No such domain"),
            "{m}"
        );
        assert!(parse_response("x", b"").is_err());
        assert!(parse_response("x", b"9\0").is_err());
    }

    proptest::proptest! {
        #[test]
        fn response_parser_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = parse_response("x", &b);
        }
    }
}
