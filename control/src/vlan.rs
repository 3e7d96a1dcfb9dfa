//! VLAN modes between the protocol's spelling and the forwarding logic's.

use flowtable::VlanMode;
use xvs_proto::vlan::{MAX_VID, check_vid};
use xvs_proto::{RpcError, VlanSpec};

// The protocol states the VLAN range for clients that do not link the forwarding logic.
const _: () = assert!(MAX_VID == flowtable::port::MAX_VID);

/// The dataplane's VLAN mode, after checking the VIDs.
///
/// # Errors
/// A VID outside 1-4094, or a trunk without VLANs.
pub fn to_mode(spec: &VlanSpec) -> Result<VlanMode, RpcError> {
    Ok(match spec {
        VlanSpec::All => VlanMode::All,
        VlanSpec::Access { tag } => VlanMode::Access(check_vid(*tag)?),
        VlanSpec::Trunk { trunks, native } => {
            if trunks.is_empty() && native.is_none() {
                return Err(RpcError::params("a trunk needs at least one VLAN"));
            }
            let mut allowed = trunks
                .iter()
                .map(|&v| check_vid(v))
                .collect::<Result<Vec<_>, _>>()?;
            allowed.sort_unstable();
            allowed.dedup();
            VlanMode::Trunk {
                allowed,
                native: native.map(check_vid).transpose()?,
            }
        }
    })
}

/// The protocol's spelling of a dataplane VLAN mode.
pub fn spec_of(mode: &VlanMode) -> VlanSpec {
    match mode {
        VlanMode::All => VlanSpec::All,
        VlanMode::Access(tag) => VlanSpec::Access { tag: *tag },
        VlanMode::Trunk { allowed, native } => VlanSpec::Trunk {
            trunks: allowed.clone(),
            native: *native,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_convert_both_ways() {
        let trunk = VlanSpec::Trunk {
            trunks: vec![20, 10, 20],
            native: Some(30),
        };
        let mode = to_mode(&trunk).unwrap();
        assert_eq!(
            mode,
            VlanMode::Trunk {
                allowed: vec![10, 20],
                native: Some(30)
            }
        );
        assert_eq!(
            spec_of(&mode),
            VlanSpec::Trunk {
                trunks: vec![10, 20],
                native: Some(30)
            }
        );
        for spec in [VlanSpec::All, VlanSpec::Access { tag: 7 }] {
            assert_eq!(spec_of(&to_mode(&spec).unwrap()), spec);
        }
        let empty = VlanSpec::Trunk {
            trunks: vec![],
            native: None,
        };
        assert_eq!(
            to_mode(&empty).unwrap_err().message,
            "a trunk needs at least one VLAN"
        );
        assert!(to_mode(&VlanSpec::Access { tag: 4095 }).is_err());
    }
}
