//! The `CNI_*` parameters, read and checked as the reference plugins' `skel` package does.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::types::{CniError, code};
use crate::attach::check_ifname;

/// A CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Add the container to the network.
    Add,
    /// Remove it (idempotent).
    Del,
    /// Check that it is still as `prevResult` says.
    Check,
    /// Is the plugin ready? (1.1.0)
    Status,
    /// Remove what no valid attachment uses. (1.1.0)
    Gc,
    /// Which versions do we speak?
    Version,
}

impl Command {
    /// The command's name in `CNI_COMMAND`.
    pub fn name(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

/// `CNI_ARGS`: `K=V;K=V`, of which xvs uses `MAC`; `IP` is for the IPAM plugin; the Kubernetes
/// keys are known and ignored. Other keys are an error unless `IgnoreUnknown` is true.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// Every pair, as given.
    pub pairs: BTreeMap<String, String>,
    /// `MAC=`: the container interface's MAC.
    pub mac: Option<String>,
}

const KNOWN_ARGS: [&str; 7] = [
    "IgnoreUnknown",
    "IP",
    "MAC",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

impl CniArgs {
    /// Parses `CNI_ARGS`.
    ///
    /// # Errors
    /// [`code::INVALID_ENV`] for a pair without `=`, or an unknown key without
    /// `IgnoreUnknown=1`.
    pub fn parse(text: &str) -> Result<CniArgs, CniError> {
        let mut pairs = BTreeMap::new();
        for pair in text.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                CniError::new(
                    code::INVALID_ENV,
                    format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
                )
            })?;
            pairs.insert(key.to_owned(), value.to_owned());
        }
        let ignore_unknown = pairs
            .get("IgnoreUnknown")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"));
        if !ignore_unknown
            && let Some(unknown) = pairs.keys().find(|k| !KNOWN_ARGS.contains(&k.as_str()))
        {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_ARGS: unknown key {unknown:?} (set IgnoreUnknown=1 to ignore it)"),
            ));
        }
        let mac = pairs.get("MAC").filter(|m| !m.is_empty()).cloned();
        Ok(CniArgs { pairs, mac })
    }
}

/// The parameters of one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (empty when not given).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, raw.
    pub raw_args: String,
    /// `CNI_ARGS`, read.
    pub args: CniArgs,
    /// `CNI_PATH`, split.
    pub path: Vec<PathBuf>,
}

fn valid_container_id(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl Invocation {
    /// Reads the parameters through `get` (the environment, or a map in tests).
    ///
    /// Required: `CNI_COMMAND` always; `CNI_CONTAINERID` and `CNI_IFNAME` for ADD, CHECK and
    /// DEL; `CNI_NETNS` for ADD and CHECK. `CNI_PATH` is needed only to find an IPAM plugin.
    ///
    /// # Errors
    /// [`code::INVALID_ENV`], naming the missing or invalid variables.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Invocation, CniError> {
        let var = |name: &str| get(name).unwrap_or_default();
        let command = match var("CNI_COMMAND").as_str() {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            "" => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    "required env variables [CNI_COMMAND] missing",
                ));
            }
            other => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("unknown CNI_COMMAND: {other}"),
                ));
            }
        };
        let per_attachment = matches!(command, Command::Add | Command::Check | Command::Del);
        let needs_netns = matches!(command, Command::Add | Command::Check);
        let mut missing = Vec::new();
        let container_id = var("CNI_CONTAINERID");
        let netns = var("CNI_NETNS");
        let ifname = var("CNI_IFNAME");
        if per_attachment && container_id.is_empty() {
            missing.push("CNI_CONTAINERID");
        }
        if needs_netns && netns.is_empty() {
            missing.push("CNI_NETNS");
        }
        if per_attachment && ifname.is_empty() {
            missing.push("CNI_IFNAME");
        }
        if !missing.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("required env variables [{}] missing", missing.join(",")),
            ));
        }
        if per_attachment {
            if !valid_container_id(&container_id) {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("invalid CNI_CONTAINERID {container_id:?}"),
                ));
            }
            check_ifname(&ifname).map_err(|e| {
                CniError::new(code::INVALID_ENV, format!("invalid CNI_IFNAME: {e}"))
            })?;
        }
        let raw_args = var("CNI_ARGS");
        let args = if per_attachment {
            CniArgs::parse(&raw_args)?
        } else {
            CniArgs::default()
        };
        let path = var("CNI_PATH")
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(Invocation {
            command,
            container_id,
            netns,
            ifname,
            raw_args,
            args,
            path,
        })
    }

    /// The variables to give a delegated plugin for `command`: the same as ours, but for the
    /// command.
    pub fn delegate_env(&self, command: Command) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", command.name().to_owned()),
            ("CNI_CONTAINERID", self.container_id.clone()),
            ("CNI_NETNS", self.netns.clone()),
            ("CNI_IFNAME", self.ifname.clone()),
            ("CNI_ARGS", self.raw_args.clone()),
            (
                "CNI_PATH",
                std::env::join_paths(&self.path)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Invocation, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Invocation::from_env(&|k| map.get(k).cloned())
    }

    #[test]
    fn required_variables_per_command() {
        let e = env(&[]).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(e.msg.contains("CNI_COMMAND"));
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(e.msg.contains("CNI_NETNS"), "{e}");
        // DEL does without a namespace.
        let del = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(del.command, Command::Del);
        assert_eq!(
            env(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
            Command::Version
        );
        assert_eq!(
            env(&[("CNI_COMMAND", "FOO")]).unwrap_err().code,
            code::INVALID_ENV
        );
        let bad_id = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "-x"),
            ("CNI_IFNAME", "eth0"),
        ]);
        assert_eq!(bad_id.unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn cni_args_as_podman_sends_them() {
        let args = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web;MAC=02:00:00:00:00:07;FOO=bar")
            .unwrap();
        assert_eq!(args.mac.as_deref(), Some("02:00:00:00:00:07"));
        assert_eq!(args.pairs["FOO"], "bar");
        assert_eq!(
            CniArgs::parse("FOO=bar").unwrap_err().code,
            code::INVALID_ENV
        );
        assert_eq!(CniArgs::parse("IP=10.0.0.9").unwrap().mac, None);
        assert_eq!(
            CniArgs::parse("novalue").unwrap_err().code,
            code::INVALID_ENV
        );
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }
}
