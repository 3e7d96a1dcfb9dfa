//! Ports as the pipeline sees them: a number, and how the port treats VLAN tags.

use core::fmt;

/// A switch port number, assigned by the daemon and stable while the port exists.
pub type PortId = u16;

/// The internal VLAN of untagged traffic on ports without VLAN configuration.
pub const NO_VLAN: u16 = 0;

/// The highest valid VLAN id.
pub const MAX_VID: u16 = 4094;

/// How a port maps frames to VLANs, after OVS's `vlan_mode`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VlanMode {
    /// Carries every VLAN: untagged frames are in [`NO_VLAN`], tagged frames in their VID,
    /// and frames leave as they came. A port with no VLAN setting is this.
    #[default]
    All,
    /// Belongs to one VLAN: frames arrive and leave untagged; tagged frames are dropped.
    Access(u16),
    /// Carries the listed VLANs tagged; untagged frames belong to `native` if set (and leave
    /// untagged in it), and are dropped otherwise.
    Trunk {
        /// The VLANs allowed (sorted, deduplicated).
        allowed: Vec<u16>,
        /// The VLAN of untagged frames.
        native: Option<u16>,
    },
}

/// How a frame's tag must look when it leaves a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EgressTag {
    /// Without a tag.
    Untagged,
    /// With this VID.
    Tagged(u16),
}

impl VlanMode {
    /// The internal VLAN of a frame that arrives with tag `vid` (`None`: untagged or
    /// priority-tagged), or `None` if the port does not accept it.
    pub fn ingress(&self, vid: Option<u16>) -> Option<u16> {
        match (self, vid) {
            (VlanMode::All, None) => Some(NO_VLAN),
            (VlanMode::All, Some(v)) => Some(v),
            (VlanMode::Access(n), None) => Some(*n),
            (VlanMode::Access(_), Some(_)) => None,
            (VlanMode::Trunk { native, .. }, None) => *native,
            (VlanMode::Trunk { allowed, .. }, Some(v)) => {
                allowed.binary_search(&v).is_ok().then_some(v)
            }
        }
    }

    /// How a frame in internal VLAN `vlan` leaves this port, or `None` if the port is not
    /// in that VLAN.
    pub fn egress(&self, vlan: u16) -> Option<EgressTag> {
        match self {
            VlanMode::All if vlan == NO_VLAN => Some(EgressTag::Untagged),
            VlanMode::All => Some(EgressTag::Tagged(vlan)),
            VlanMode::Access(n) => (*n == vlan).then_some(EgressTag::Untagged),
            VlanMode::Trunk { allowed, native } => {
                if *native == Some(vlan) {
                    Some(EgressTag::Untagged)
                } else if allowed.binary_search(&vlan).is_ok() {
                    Some(EgressTag::Tagged(vlan))
                } else {
                    None
                }
            }
        }
    }
}

impl fmt::Display for VlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VlanMode::All => f.write_str("all"),
            VlanMode::Access(n) => write!(f, "access tag={n}"),
            VlanMode::Trunk { allowed, native } => {
                let list: Vec<String> = allowed.iter().map(u16::to_string).collect();
                write!(f, "trunk trunks={}", list.join(","))?;
                if let Some(n) = native {
                    write!(f, " native={n}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_port() {
        let m = VlanMode::Access(10);
        assert_eq!(m.ingress(None), Some(10));
        assert_eq!(m.ingress(Some(10)), None);
        assert_eq!(m.egress(10), Some(EgressTag::Untagged));
        assert_eq!(m.egress(20), None);
    }

    #[test]
    fn trunk_port() {
        let m = VlanMode::Trunk {
            allowed: vec![10, 20],
            native: Some(30),
        };
        assert_eq!(m.ingress(Some(10)), Some(10));
        assert_eq!(m.ingress(Some(11)), None);
        assert_eq!(m.ingress(None), Some(30));
        assert_eq!(m.egress(20), Some(EgressTag::Tagged(20)));
        assert_eq!(m.egress(30), Some(EgressTag::Untagged));
        assert_eq!(m.egress(40), None);
        let no_native = VlanMode::Trunk {
            allowed: vec![10],
            native: None,
        };
        assert_eq!(no_native.ingress(None), None);
    }

    #[test]
    fn default_port_carries_everything_as_is() {
        let m = VlanMode::All;
        assert_eq!(m.ingress(None), Some(NO_VLAN));
        assert_eq!(m.ingress(Some(7)), Some(7));
        assert_eq!(m.egress(NO_VLAN), Some(EgressTag::Untagged));
        assert_eq!(m.egress(7), Some(EgressTag::Tagged(7)));
    }
}
