//! Network interfaces the lab owns: any link, deleted on drop, and veth pairs made here.

use std::process::Command;

use crate::{Error, Netns, check};

/// The kernel's limit on an interface name, in bytes (`IFNAMSIZ` less the NUL).
const MAX_IFNAME: usize = 15;

/// An interface deleted (`ip link del`) on drop, unless gone by then.
#[derive(Debug)]
pub struct Link {
    name: String,
    netns: Option<String>,
    armed: bool,
}

impl Link {
    /// Takes charge of host interface `name`, which something else (a tool under test, a
    /// bridge a bench made) created.
    pub fn adopt(name: &str) -> Link {
        Link {
            name: name.to_owned(),
            netns: None,
            armed: true,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn ip(&self) -> Command {
        ip_link(self.netns.as_deref())
    }

    /// Brings it up.
    ///
    /// # Errors
    /// `ip link set up` fails.
    pub fn set_up(&self) -> Result<(), Error> {
        check(self.ip().args(["set", &self.name, "up"])).map(drop)
    }

    /// Deletes it now, as an operator would; nothing is left for drop to do.
    ///
    /// # Errors
    /// `ip link del` fails (it is gone already).
    pub fn delete(mut self) -> Result<(), Error> {
        self.armed = false;
        check(self.ip().args(["del", &self.name])).map(drop)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.ip().args(["del", &self.name]).output();
        }
    }
}

/// `ip [-n NS] link`, for links in namespace `netns` (the host's with `None`).
fn ip_link(netns: Option<&str>) -> Command {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.arg("link");
    cmd
}

/// A veth pair: deleting one end deletes both, so the guard deletes the first on drop.
#[derive(Debug)]
pub struct VethPair {
    link: Link,
    peer: String,
    peer_netns: Option<String>,
}

/// How to make a [`VethPair`]: where each end goes, their addresses, their queues.
#[derive(Debug)]
#[must_use = "nothing is made until `create`"]
pub struct VethBuilder<'a> {
    name: &'a str,
    peer: &'a str,
    netns: Option<&'a Netns>,
    peer_netns: Option<&'a Netns>,
    address: Option<&'a str>,
    peer_address: Option<&'a str>,
    queues: u32,
}

impl VethPair {
    /// A pair of `name` and `peer`, both in the host namespace unless moved, one queue each.
    ///
    /// # Examples
    /// ```no_run
    /// use xvs_testkit::{Netns, VethPair, unique_name};
    ///
    /// let base = unique_name("xk");
    /// let ns = Netns::new(format!("{base}n"))?;
    /// let veth = VethPair::build(&format!("{base}h"), "eth0")
    ///     .peer_netns(&ns)
    ///     .create()?;
    /// veth.set_up()?;
    /// # Ok::<(), xvs_testkit::Error>(())
    /// ```
    pub fn build<'a>(name: &'a str, peer: &'a str) -> VethBuilder<'a> {
        VethBuilder {
            name,
            peer,
            netns: None,
            peer_netns: None,
            address: None,
            peer_address: None,
            queues: 1,
        }
    }

    /// The first end's name.
    pub fn name(&self) -> &str {
        self.link.name()
    }

    /// The peer's name.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Brings both ends up.
    ///
    /// # Errors
    /// `ip link set up` fails.
    pub fn set_up(&self) -> Result<(), Error> {
        self.link.set_up()?;
        check(ip_link(self.peer_netns.as_deref()).args(["set", &self.peer, "up"])).map(drop)
    }

    /// Deletes the pair now; nothing is left for drop to do.
    ///
    /// # Errors
    /// `ip link del` fails (the pair is gone already).
    pub fn delete(self) -> Result<(), Error> {
        self.link.delete()
    }
}

impl<'a> VethBuilder<'a> {
    /// Puts the first end in `ns` rather than the host.
    pub fn netns(mut self, ns: &'a Netns) -> Self {
        self.netns = Some(ns);
        self
    }

    /// Puts the peer in `ns` rather than the host.
    pub fn peer_netns(mut self, ns: &'a Netns) -> Self {
        self.peer_netns = Some(ns);
        self
    }

    /// The first end's MAC address.
    pub fn address(mut self, mac: &'a str) -> Self {
        self.address = Some(mac);
        self
    }

    /// The peer's MAC address.
    pub fn peer_address(mut self, mac: &'a str) -> Self {
        self.peer_address = Some(mac);
        self
    }

    /// `queues` RX and TX queues on both ends (1, the default, adds nothing to the command).
    pub fn queues(mut self, queues: u32) -> Self {
        self.queues = queues;
        self
    }

    /// Makes the pair (`ip link add … type veth peer …`), both ends down.
    ///
    /// # Errors
    /// [`Error::NameTooLong`] before anything is made; `ip link add` fails (a name taken).
    pub fn create(self) -> Result<VethPair, Error> {
        for name in [self.name, self.peer] {
            if name.len() > MAX_IFNAME {
                return Err(Error::NameTooLong(name.to_owned()));
            }
        }
        let queues = self.queues.to_string();
        let end = |cmd: &mut Command, netns: Option<&Netns>, address: Option<&str>| {
            if self.queues != 1 {
                cmd.args(["numtxqueues", &queues, "numrxqueues", &queues]);
            }
            if let Some(ns) = netns {
                cmd.args(["netns", ns.name()]);
            }
            if let Some(mac) = address {
                cmd.args(["address", mac]);
            }
        };
        let mut cmd = Command::new("ip");
        cmd.args(["link", "add", self.name]);
        end(&mut cmd, self.netns, self.address);
        cmd.args(["type", "veth", "peer", "name", self.peer]);
        end(&mut cmd, self.peer_netns, self.peer_address);
        check(&mut cmd)?;
        Ok(VethPair {
            link: Link {
                name: self.name.to_owned(),
                netns: self.netns.map(|ns| ns.name().to_owned()),
                armed: true,
            },
            peer: self.peer.to_owned(),
            peer_netns: self.peer_netns.map(|ns| ns.name().to_owned()),
        })
    }
}
