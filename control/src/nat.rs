//! The host's NAT for the switch: masquerade for internal ports' subnets, DNAT for published
//! ports. The kernel does the NAT (nftables, through the `nft` tool); xvsd only writes the
//! rules.
//!
//! Every rule lives in one table of the daemon's own (`table ip xvs`, or one named after the
//! daemon's upcall device for a daemon on another socket), replaced as a whole in one `nft -f`
//! transaction whenever the desired state changes what it should hold, and deleted when
//! nothing needs it or the daemon stops cleanly. No rule outside the table is touched.

use std::io::Write;
use std::process::{Command, Stdio};

use ipnet::IpNet;
use xvs_proto::state::DesiredState;
use xvs_proto::{RpcError, code};

use crate::internal;

/// The table of the daemon whose upcall device is `upcall`: `xvs` for the default one, else
/// `xvs_` and the device's name (itself derived from the socket), so that daemons on
/// different sockets never share a table.
pub fn table_name(upcall: &str) -> String {
    if upcall == dataplane::switch::DEFAULT_UPCALL {
        return "xvs".to_owned();
    }
    let clean: String = upcall
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("xvs_{clean}")
}

/// The body of the table `desired` asks for (its chains and rules), or `None` when it asks
/// for no NAT at all.
///
/// # Errors
/// An internal port's address that is not `addr/len` ([`code::INVALID_PARAMS`]).
pub(crate) fn ruleset(table: &str, desired: &DesiredState) -> Result<Option<String>, RpcError> {
    let mut masquerade = Vec::new();
    let mut dnat = Vec::new();
    for (name, port) in &desired.ports {
        if let Some(wanted) = &port.internal
            && wanted.masquerade
        {
            for net in internal::addresses(wanted)? {
                if let IpNet::V4(net) = net.trunc() {
                    masquerade.push(format!(
                        "        ip saddr {net} oifname != \"{name}\" masquerade\n"
                    ));
                }
            }
        }
        for p in &port.publish {
            let proto = p.proto.as_str();
            dnat.push(format!(
                "        fib daddr type local {proto} dport {} dnat to {}:{}\n",
                p.host_port, p.addr, p.port
            ));
        }
    }
    if masquerade.is_empty() && dnat.is_empty() {
        return Ok(None);
    }
    let mut text = format!("table ip {table} {{\n");
    let chain = |text: &mut String, name: &str, hook: &str, priority: &str, rules: &[String]| {
        text.push_str(&format!(
            "    chain {name} {{\n        type nat hook {hook} priority {priority}; policy accept;\n"
        ));
        for rule in rules {
            text.push_str(rule);
        }
        text.push_str("    }\n");
    };
    if !dnat.is_empty() {
        chain(&mut text, "prerouting", "prerouting", "dstnat", &dnat);
        chain(&mut text, "output", "output", "-100", &dnat);
    }
    if !masquerade.is_empty() {
        chain(
            &mut text,
            "postrouting",
            "postrouting",
            "srcnat",
            &masquerade,
        );
    }
    text.push_str("}\n");
    Ok(Some(text))
}

/// The daemon's NAT table, and what it last wrote there.
#[derive(Debug)]
pub struct Nat {
    table: String,
    /// The table's body as last applied (`Some(None)`: known absent; `None`: unknown, as at
    /// start, when a predecessor may have left one).
    applied: Option<Option<String>>,
}

impl Nat {
    /// The NAT of a daemon whose table is `table` (see [`table_name`]).
    pub fn new(table: String) -> Nat {
        Nat {
            table,
            applied: None,
        }
    }

    /// Makes the table what `desired` asks for: replaced atomically, or deleted when nothing
    /// needs it; IPv4 forwarding turned on when something does. Nothing is run when the
    /// table is already so.
    ///
    /// # Errors
    /// `nft` is missing or refused the rules, or forwarding cannot be turned on
    /// ([`code::DATAPLANE`]).
    pub(crate) fn apply(&mut self, desired: &DesiredState) -> Result<(), RpcError> {
        let wanted = ruleset(&self.table, desired)?;
        if self.applied.as_ref() == Some(&wanted) {
            return Ok(());
        }
        let fail = |message: String| RpcError::new(code::DATAPLANE, message);
        let mut script = format!("table ip {0}\ndelete table ip {0}\n", self.table);
        match &wanted {
            Some(body) => {
                xvs_sys::procfs::enable_ipv4_forwarding()
                    .map_err(|e| fail(format!("turning on IPv4 forwarding: {e}")))?;
                script.push_str(body);
                nft(&script).map_err(fail)?;
            }
            None => {
                // Nothing asked for: remove what a predecessor may have left. Without nft
                // there can be no such table, and nothing to do.
                if let Err(e) = nft(&script)
                    && self.applied.is_some()
                {
                    return Err(fail(e));
                }
            }
        }
        self.applied = Some(wanted);
        Ok(())
    }

    /// Deletes the table (a clean stop).
    pub fn clear(&mut self) {
        if self.applied.as_ref().is_some_and(Option::is_none) {
            return;
        }
        let script = format!("table ip {0}\ndelete table ip {0}\n", self.table);
        if let Err(e) = nft(&script) {
            tracing::warn!(table = self.table, "NAT table not removed: {e}");
        }
        self.applied = Some(None);
    }
}

/// Runs `nft -f -` on `script`.
fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running nft (install nftables for NAT): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft refused the NAT rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use xvs_proto::state::{Internal, Port, Proto, Publish};

    use super::*;

    #[test]
    fn the_table_holds_masquerade_and_published_ports() {
        let mut desired = DesiredState::default();
        assert_eq!(ruleset("xvs", &desired).unwrap(), None);
        desired.ports = BTreeMap::from([
            (
                "br0".to_owned(),
                Port {
                    internal: Some(Internal {
                        addrs: vec!["10.7.0.1/24".into(), "fd00::1/64".into()],
                        masquerade: true,
                    }),
                    ..Port::default()
                },
            ),
            (
                "xvs1".to_owned(),
                Port {
                    publish: vec![Publish {
                        host_port: 8080,
                        port: 80,
                        proto: Proto::Tcp,
                        addr: "10.7.0.2".parse().unwrap(),
                    }],
                    ..Port::default()
                },
            ),
        ]);
        let text = ruleset("xvs", &desired).unwrap().unwrap();
        assert!(text.starts_with("table ip xvs {\n"), "{text}");
        assert!(
            text.contains("ip saddr 10.7.0.0/24 oifname != \"br0\" masquerade"),
            "{text}"
        );
        assert!(!text.contains("fd00"), "{text}");
        assert_eq!(
            text.matches("fib daddr type local tcp dport 8080 dnat to 10.7.0.2:80")
                .count(),
            2,
            "{text}"
        );
        // Masquerade off: only the published port.
        desired.ports.get_mut("br0").unwrap().internal = Some(Internal::default());
        let text = ruleset("xvs", &desired).unwrap().unwrap();
        assert!(!text.contains("masquerade"), "{text}");
    }

    #[test]
    fn tables_are_named_after_the_daemon() {
        assert_eq!(table_name(dataplane::switch::DEFAULT_UPCALL), "xvs");
        assert_eq!(table_name("xvsu0123abcd"), "xvs_xvsu0123abcd");
        assert_eq!(table_name("x-1"), "xvs_x_1");
    }
}
