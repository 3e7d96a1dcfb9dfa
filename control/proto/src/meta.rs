//! What the daemon says about itself: `version` and `list-commands`.

use serde::{Deserialize, Serialize};

use crate::method::MethodInfo;

/// The version of this protocol, as `version` reports it.
pub const PROTOCOL: u32 = 1;

/// The result of `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResult {
    /// The daemon's version.
    pub version: String,
    /// The protocol's version ([`PROTOCOL`]).
    pub protocol: u32,
}

/// One entry of `list-commands`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// The method's name.
    pub name: String,
    /// Its parameters, described.
    pub params: String,
    /// What it does.
    pub help: String,
}

impl From<&MethodInfo> for CommandInfo {
    fn from(info: &MethodInfo) -> CommandInfo {
        CommandInfo {
            name: info.name.to_owned(),
            params: info.params.to_owned(),
            help: info.help.to_owned(),
        }
    }
}
