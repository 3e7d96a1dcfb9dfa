//! A planned restart without a gap: the switch pins the bpf links of its ports in a bpffs
//! directory and exits; its successor adopts each link for the port of the same interface and
//! swaps its own program onto it, so the kernel never stops forwarding the flows it was given.
//!
//! A pin is named `IFINDEX-tc`, `IFINDEX-xdp-drv` or `IFINDEX-xdp-skb` (bpffs refuses dots in
//! names). Nothing is pinned
//! outside a handover, and the successor removes every pin once its ports are added, adopted
//! or not: a handover nobody takes is undone by the next start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use xvs_sys::bpf::XdpMode;
use xvs_sys::bpf::pin::ensure_bpffs;

use super::{Switch, SwitchError};
use crate::hook::HookKind;

/// The bpffs mount xvs pins in (mounted by xvsd if it is not).
pub const BPFFS: &str = "/sys/fs/bpf";

/// A link a predecessor left for this switch.
#[derive(Debug)]
pub(crate) struct Pinned {
    pub(crate) path: PathBuf,
    pub(crate) kind: HookKind,
    pub(crate) mode: Option<XdpMode>,
}

impl Pinned {
    /// Removes the pin: the link goes once no process holds it (its program detaches).
    pub(crate) fn unpin(&self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), "cannot unpin a handed-over link: {e}");
        }
    }
}

/// The pin's file name for a link of `kind` (in `mode`) on `ifindex`.
fn file_name(ifindex: u32, kind: HookKind, mode: Option<XdpMode>) -> String {
    match (kind, mode) {
        (HookKind::Tc, _) => format!("{ifindex}-tc"),
        (HookKind::Xdp, mode) => {
            format!("{ifindex}-xdp-{}", mode.unwrap_or(XdpMode::Generic).name())
        }
    }
}

/// What a pin's file name says: the interface, the hook, the XDP mode.
fn parse_name(name: &str) -> Option<(u32, HookKind, Option<XdpMode>)> {
    let (index, kind) = name.split_once('-')?;
    let index = index.parse().ok()?;
    match kind {
        "tc" => Some((index, HookKind::Tc, None)),
        "xdp-drv" => Some((index, HookKind::Xdp, Some(XdpMode::Driver))),
        "xdp-skb" => Some((index, HookKind::Xdp, Some(XdpMode::Generic))),
        _ => None,
    }
}

/// The links pinned in `dir`, by interface index. A missing directory holds none; files that
/// are no pin of ours are left alone.
pub(crate) fn pinned_in(dir: &Path) -> BTreeMap<u32, Pinned> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let (ifindex, kind, mode) = parse_name(name.to_str()?)?;
            Some((
                ifindex,
                Pinned {
                    path: entry.path(),
                    kind,
                    mode,
                },
            ))
        })
        .collect()
}

impl Switch {
    /// Hands the switch over to a successor: pins every port's link in the handover
    /// directory of the options, then stops the workers and closes the sockets. The links
    /// stay attached and keep forwarding what the kernel was given; frames they would send to
    /// the workers are dropped until the successor adopts them. Returns the links pinned.
    ///
    /// # Errors
    /// No handover directory was given, bpffs cannot be mounted, or a pin fails (then the
    /// switch is stopped as usual and nothing stays pinned).
    pub fn hand_over(mut self) -> Result<usize, SwitchError> {
        let dir = self
            .options
            .handover
            .clone()
            .ok_or_else(|| SwitchError::Invalid("no handover directory".into()))?;
        let pinned = self.pin_links(&dir);
        if pinned.is_err() {
            for pin in pinned_in(&dir).values() {
                pin.unpin();
            }
        }
        self.stop();
        pinned
    }

    fn pin_links(&self, dir: &Path) -> Result<usize, SwitchError> {
        ensure_bpffs(Path::new(BPFFS))?;
        std::fs::create_dir_all(dir).map_err(|io_error| xvs_sys::SyscallError {
            call: "mkdir handover",
            io_error,
        })?;
        // What a predecessor left and nobody took is not ours to hand on.
        for stale in pinned_in(dir).values() {
            stale.unpin();
        }
        for port in self.ports.values() {
            let name = file_name(
                port.interface.ifindex,
                port.hook.kind(),
                port.hook.xdp_mode(),
            );
            port.hook.pin(&dir.join(name))?;
        }
        tracing::info!(links = self.ports.len(), dir = %dir.display(), "links pinned for a handover");
        Ok(self.ports.len())
    }

    /// The link a predecessor left on `ifindex`, taken from those waiting.
    pub(super) fn take_pinned(&mut self, ifindex: u32) -> Option<Pinned> {
        self.handed_over.remove(&ifindex)
    }

    /// Ends a start-up, once every port is added: swaps this switch's programs onto the
    /// links its ports adopted, all at once (until then the predecessor's programs forward
    /// what the kernel was given, and a frame one of ours sent up could find its way to a port
    /// not added yet), then removes the pins of every link no port adopted, so their programs
    /// detach, and the handover directory. Returns how many links were not adopted.
    pub fn end_adoption(&mut self) -> usize {
        if self.ports.values().any(|p| p.hook.swap_pending()) {
            // The workers have the queues and have filled their rings: a barrier answers at
            // the start of a worker's loop, the second after the loop that refilled.
            if let Err(e) = self.barrier().and_then(|()| self.barrier()) {
                tracing::error!("before swapping adopted links: {e}");
            }
            let mut swapped = 0;
            for port in self.ports.values_mut() {
                if !port.hook.swap_pending() {
                    continue;
                }
                match port.hook.finish_adoption() {
                    Ok(()) => swapped += 1,
                    Err(e) => tracing::error!(
                        port = port.id,
                        name = port.interface.name,
                        "the adopted link keeps its old program: {e}"
                    ),
                }
            }
            tracing::info!(links = swapped, "adopted links run this switch's programs");
        }
        let left = std::mem::take(&mut self.handed_over);
        for pin in left.values() {
            tracing::info!(path = %pin.path.display(), "a handed-over link no port took: removed");
            pin.unpin();
        }
        if let Some(dir) = &self.options.handover {
            let _ = std::fs::remove_dir(dir);
        }
        left.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_name_says_what_it_pins() {
        for (ifindex, kind, mode) in [
            (7, HookKind::Tc, None),
            (12, HookKind::Xdp, Some(XdpMode::Driver)),
            (3, HookKind::Xdp, Some(XdpMode::Generic)),
        ] {
            assert_eq!(
                parse_name(&file_name(ifindex, kind, mode)),
                Some((ifindex, kind, mode))
            );
        }
        assert_eq!(parse_name("7-tcx"), None);
        assert_eq!(parse_name("seven-tc"), None);
        assert_eq!(parse_name("README"), None);
    }
}
