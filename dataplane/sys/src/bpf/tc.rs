//! tc programs at tcx ingress: a `SCHED_CLS` program attached to a device's ingress by a
//! bpf_link (Linux 6.6+), which the kernel detaches when the last fd of the link closes, like
//! an XDP link. Attaching leaves the device's offloads alone (an XDP program on a veth turns
//! off GSO/TSO on its peer; a tc program does not).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::{ATTACH_TYPE_TCX_INGRESS, Insn, PROG_TYPE_SCHED_CLS, ProgError};
use crate::SyscallError;

/// Loads a `SCHED_CLS` program.
///
/// # Errors
/// The verifier refuses it (the error carries its log) or CAP_BPF is missing.
pub fn load_sched_cls(insns: &[Insn], name: &str) -> Result<OwnedFd, ProgError> {
    Ok(super::prog_load(PROG_TYPE_SCHED_CLS, insns, name, 0)?)
}

/// A tc program attached at a device's tcx ingress. Dropping it detaches the program.
#[derive(Debug)]
pub struct TcxLink {
    link: OwnedFd,
}

impl TcxLink {
    /// Attaches `prog` at the ingress of `ifindex`, after whatever tcx programs are there.
    ///
    /// # Errors
    /// [`ProgError::Attach`]: EINVAL on a kernel without tcx.
    pub fn attach(prog: BorrowedFd<'_>, ifindex: u32, ifname: &str) -> Result<TcxLink, ProgError> {
        super::link_create(prog, ifindex, ATTACH_TYPE_TCX_INGRESS, 0)
            .map(|link| TcxLink { link })
            .map_err(|error| ProgError::Attach {
                ifname: ifname.to_owned(),
                error,
            })
    }

    /// Replaces the program atomically.
    ///
    /// # Errors
    /// `BPF_LINK_UPDATE` fails (the interface went away).
    pub fn replace(&self, prog: BorrowedFd<'_>) -> Result<(), SyscallError> {
        super::link_update(self.link.as_fd(), prog)
    }

    /// Pins the link at `path` (in bpffs): it stays attached after this process exits.
    ///
    /// # Errors
    /// `BPF_OBJ_PIN` fails.
    pub fn pin(&self, path: &Path) -> Result<(), SyscallError> {
        super::pin::obj_pin(self.link.as_fd(), path)
    }

    /// Takes over the link pinned at `path`, which must be a tcx ingress link on `ifindex`
    /// (the pin stays; the caller removes it).
    ///
    /// # Errors
    /// Nothing pinned there, or a link of something else.
    pub fn adopt(path: &Path, ifindex: u32) -> Result<TcxLink, SyscallError> {
        let link = super::pin::obj_get(path)?;
        match super::pin::link_target(link.as_fd())? {
            (index, ATTACH_TYPE_TCX_INGRESS) if index == ifindex => Ok(TcxLink { link }),
            _ => Err(SyscallError {
                call: "adopt tcx link",
                io_error: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::bpf::abi::tc_action;
    use crate::bpf::asm::{exit, mov_imm};

    /// A veth with its peer in a namespace of its own, both addressed; removed on drop.
    struct Wire {
        host: String,
        ns: String,
    }

    impl Drop for Wire {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.host])
                .status();
            let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        }
    }

    fn sh(args: &[&str]) -> bool {
        Command::new(args[0])
            .args(&args[1..])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn pings(wire: &Wire) -> bool {
        sh(&[
            "ip",
            "netns",
            "exec",
            &wire.ns,
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "10.203.0.1",
        ])
    }

    #[test]
    fn a_program_runs_at_tcx_ingress_and_detaches_with_its_link() {
        let id = std::process::id() % 100_000;
        let wire = Wire {
            host: format!("xtc{id}a"),
            ns: format!("xtc{id}"),
        };
        let peer = format!("xtc{id}b");
        let made = sh(&["ip", "netns", "add", &wire.ns])
            && sh(&[
                "ip", "link", "add", &wire.host, "type", "veth", "peer", "name", &peer,
            ])
            && sh(&["ip", "link", "set", &peer, "netns", &wire.ns])
            && sh(&["ip", "addr", "add", "10.203.0.1/24", "dev", &wire.host])
            && sh(&["ip", "link", "set", &wire.host, "up"])
            && sh(&[
                "ip",
                "-n",
                &wire.ns,
                "addr",
                "add",
                "10.203.0.2/24",
                "dev",
                &peer,
            ])
            && sh(&["ip", "-n", &wire.ns, "link", "set", &peer, "up"]);
        if !made || !sh(&["which", "ping"]) {
            eprintln!("SKIPPED a_program_runs_at_tcx_ingress: needs root, ip and ping");
            return;
        }
        assert!(pings(&wire), "the wire works before");
        let ifindex = crate::netdev::if_nametoindex(&wire.host).unwrap();
        let pass = load_sched_cls(&[mov_imm(0, tc_action::TC_ACT_OK), exit()], "xvs_tc_pass")
            .expect("the verifier takes a two-instruction classifier");
        let drop_all =
            load_sched_cls(&[mov_imm(0, tc_action::TC_ACT_SHOT), exit()], "xvs_tc_drop").unwrap();
        let link = TcxLink::attach(pass.as_fd(), ifindex, &wire.host).expect("tcx attach");
        assert!(pings(&wire), "a passing program lets traffic in");
        // Pinned, the link outlives its fd, and is taken over by whoever opens the pin.
        crate::bpf::pin::ensure_bpffs(std::path::Path::new("/sys/fs/bpf")).expect("bpffs");
        let pin = std::path::PathBuf::from(format!("/sys/fs/bpf/xtc-pin-{id}"));
        link.pin(&pin).expect("pin a tcx link");
        drop(link);
        assert!(
            pings(&wire),
            "the pinned link still runs the passing program"
        );
        let link = TcxLink::adopt(&pin, ifindex).expect("adopt");
        assert!(
            TcxLink::adopt(&pin, ifindex + 1).is_err(),
            "another interface's"
        );
        std::fs::remove_file(&pin).unwrap();
        link.replace(drop_all.as_fd()).expect("a live swap");
        assert!(!pings(&wire), "the dropping program runs at ingress");
        drop(link);
        assert!(pings(&wire), "closing the link detached the program");
    }
}
