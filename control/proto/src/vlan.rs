//! VLAN modes as the protocol spells them.

use serde::{Deserialize, Serialize};

use crate::envelope::RpcError;

/// The highest VLAN id (4095 is reserved).
pub const MAX_VID: u16 = 4094;

/// A port's VLAN mode.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum VlanSpec {
    /// Every VLAN, frames as they come.
    #[default]
    All,
    /// One VLAN, untagged on the wire.
    Access {
        /// The VLAN.
        tag: u16,
    },
    /// Several VLANs tagged, one optionally untagged.
    Trunk {
        /// The tagged VLANs.
        trunks: Vec<u16>,
        /// The untagged VLAN.
        #[serde(default)]
        native: Option<u16>,
    },
}

/// `vid` if it names a VLAN (1-4094).
///
/// # Errors
/// An invalid-parameters error saying the range.
pub fn check_vid(vid: u16) -> Result<u16, RpcError> {
    if (1..=MAX_VID).contains(&vid) {
        Ok(vid)
    } else {
        Err(RpcError::params(format!(
            "VLAN {vid} is out of range 1-{MAX_VID}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn modes_are_tagged_by_mode() {
        for (spec, wire) in [
            (VlanSpec::All, json!({"mode": "all"})),
            (
                VlanSpec::Access { tag: 10 },
                json!({"mode": "access", "tag": 10}),
            ),
            (
                VlanSpec::Trunk {
                    trunks: vec![10, 20],
                    native: Some(30),
                },
                json!({"mode": "trunk", "trunks": [10, 20], "native": 30}),
            ),
        ] {
            assert_eq!(serde_json::to_value(&spec).unwrap(), wire);
            assert_eq!(serde_json::from_value::<VlanSpec>(wire).unwrap(), spec);
        }
        let trunk: VlanSpec =
            serde_json::from_value(json!({"mode": "trunk", "trunks": [5]})).unwrap();
        assert_eq!(
            trunk,
            VlanSpec::Trunk {
                trunks: vec![5],
                native: None
            }
        );
        assert!(serde_json::from_value::<VlanSpec>(json!({"mode": "access", "vid": 3})).is_err());
    }

    #[test]
    fn vids_are_checked() {
        assert_eq!(check_vid(1), Ok(1));
        assert_eq!(check_vid(MAX_VID), Ok(MAX_VID));
        for bad in [0, 4095] {
            let e = check_vid(bad).unwrap_err();
            assert_eq!(e.code, crate::code::INVALID_PARAMS);
            assert_eq!(e.message, format!("VLAN {bad} is out of range 1-4094"));
        }
    }
}
