//! Running the delegated IPAM plugin (spec section 4): found through `CNI_PATH`, given the
//! whole network configuration and our parameters, its stderr passed through to ours.
//!
//! The plugin may be older than the configuration: Debian's host-local 1.1.1 speaks up to
//! 1.0.0 while a configuration may say 1.1.0. So each call first asks the plugin's `VERSION`
//! and, when it lacks the configuration's version, speaks the newest older one it has; the
//! addresses it returns do not depend on the version.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::{Value, json};

use super::env::{Command, Invocation};
use super::types::{
    CniError, CniResult, NetConf, SUPPORTED_VERSIONS, at_least, code, compare_versions,
};

/// An IPAM plugin, and the version we speak with it.
#[derive(Debug, Clone)]
pub struct Ipam {
    name: String,
    binary: PathBuf,
    version: String,
}

/// Finds `name` in the directories of `CNI_PATH`.
///
/// # Errors
/// [`code::INVALID_CONFIG`] when no directory has an executable of that name.
pub fn find_plugin(name: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    path.iter()
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                format!("IPAM plugin {name:?} not found in CNI_PATH"),
            )
            .details(format!(
                "looked in [{}]",
                path.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Ipam {
    /// The IPAM plugin of `conf`, or `None` when the configuration has none.
    ///
    /// # Errors
    /// The plugin is not found ([`code::INVALID_CONFIG`]), does not answer `VERSION`, or speaks
    /// no version we can use ([`code::INCOMPATIBLE_VERSION`]).
    pub fn of(conf: &NetConf, inv: &Invocation) -> Result<Option<Ipam>, CniError> {
        let Some(name) = &conf.ipam_type else {
            return Ok(None);
        };
        if inv.path.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_PATH is empty, so the IPAM plugin {name:?} cannot be found"),
            ));
        }
        let binary = find_plugin(name, &inv.path)?;
        let mut ipam = Ipam {
            name: name.clone(),
            binary,
            version: conf.cni_version.clone(),
        };
        let answer = ipam
            .exec(
                &[("CNI_COMMAND", "VERSION".into())],
                &json!({"cniVersion": conf.cni_version}),
            )?
            .unwrap_or_default();
        let theirs: Vec<String> = answer["supportedVersions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        if !theirs.contains(&conf.cni_version) {
            ipam.version = SUPPORTED_VERSIONS
                .iter()
                .rev()
                .find(|v| {
                    theirs.iter().any(|t| t == *v)
                        && compare_versions(v, &conf.cni_version).is_some_and(|o| o.is_le())
                })
                .map(|v| (*v).to_owned())
                .ok_or_else(|| {
                    CniError::new(
                        code::INCOMPATIBLE_VERSION,
                        format!("IPAM plugin {name:?} speaks no version xvs-cni can use"),
                    )
                    .details(format!(
                        "config is {}, {name} supports [{}]",
                        conf.cni_version,
                        theirs.join(", ")
                    ))
                })?;
            tracing::debug!(
                ipam = name,
                version = ipam.version,
                "IPAM speaks an older version"
            );
        }
        Ok(Some(ipam))
    }

    /// The version spoken with the plugin.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The configuration as the plugin gets it: ours, in its version.
    fn config_for(&self, conf: &NetConf) -> Result<Value, CniError> {
        let mut raw = conf.raw.clone();
        if self.version != conf.cni_version {
            raw["cniVersion"] = json!(self.version);
            if let Some(prev) = &conf.prev_result {
                raw["prevResult"] = CniResult::parse(prev)?.to_json(&self.version);
            }
        }
        Ok(raw)
    }

    /// Runs the plugin; its result object on success (`None` for no output).
    fn exec(&self, env: &[(&str, String)], stdin: &Value) -> Result<Option<Value>, CniError> {
        let fail = |what: &str, e: std::io::Error| {
            CniError::new(
                code::IO_FAILURE,
                format!("{what} IPAM plugin {}", self.binary.display()),
            )
            .details(e.to_string())
        };
        let mut child = Process::new(&self.binary)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| fail("running", e))?;
        let input = serde_json::to_vec(stdin).expect("JSON values serialize");
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(&input).map_err(|e| fail("writing to", e))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|e| fail("waiting for", e))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let parsed: Option<Value> = if text.trim().is_empty() {
            None
        } else {
            serde_json::from_str(&text).ok()
        };
        if output.status.success() {
            return match (parsed, text.trim().is_empty()) {
                (Some(v), _) => Ok(Some(v)),
                (None, true) => Ok(None),
                (None, false) => Err(CniError::new(
                    code::DECODE,
                    format!(
                        "IPAM plugin {} printed something that is not JSON",
                        self.name
                    ),
                )
                .details(text.into_owned())),
            };
        }
        let error = parsed.unwrap_or(Value::Null);
        let code = error["code"]
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(code::INTERNAL);
        let msg = error["msg"].as_str().map_or_else(
            || format!("failed ({}): {}", output.status, text.trim()),
            str::to_owned,
        );
        Err(
            CniError::new(code, format!("IPAM plugin {}: {msg}", self.name))
                .details(error["details"].as_str().unwrap_or_default()),
        )
    }

    fn run(
        &self,
        inv: &Invocation,
        command: Command,
        conf: &NetConf,
        attachment: Option<(&str, &str)>,
    ) -> Result<Option<Value>, CniError> {
        let mut env = inv.delegate_env(command);
        if let Some((container, ifname)) = attachment {
            for (key, value) in &mut env {
                match *key {
                    "CNI_CONTAINERID" => *value = container.to_owned(),
                    "CNI_IFNAME" => *value = ifname.to_owned(),
                    "CNI_NETNS" => value.clear(),
                    _ => {}
                }
            }
        }
        self.exec(&env, &self.config_for(conf)?)
    }

    /// ADD: the addresses, routes and DNS settings for the container.
    ///
    /// # Errors
    /// The plugin's error, or [`code::DECODE`] for a result we cannot read.
    pub fn add(&self, inv: &Invocation, conf: &NetConf) -> Result<CniResult, CniError> {
        let result = self.run(inv, Command::Add, conf, None)?.ok_or_else(|| {
            CniError::new(
                code::DECODE,
                format!("IPAM plugin {} printed no result", self.name),
            )
        })?;
        CniResult::parse(&result)
    }

    /// DEL, for this invocation's attachment or for `attachment` (container ID, ifname).
    ///
    /// # Errors
    /// The plugin's error.
    pub fn del(
        &self,
        inv: &Invocation,
        conf: &NetConf,
        attachment: Option<(&str, &str)>,
    ) -> Result<(), CniError> {
        self.run(inv, Command::Del, conf, attachment).map(drop)
    }

    /// CHECK (skipped when the plugin speaks no version with CHECK).
    ///
    /// # Errors
    /// The plugin's error.
    pub fn check(&self, inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
        if !at_least(&self.version, "0.4.0") {
            return Ok(());
        }
        self.run(inv, Command::Check, conf, None).map(drop)
    }

    /// STATUS or GC (skipped when the plugin does not speak 1.1.0, which introduced them).
    ///
    /// # Errors
    /// The plugin's error.
    pub fn status_or_gc(
        &self,
        inv: &Invocation,
        command: Command,
        conf: &NetConf,
    ) -> Result<(), CniError> {
        if !at_least(&self.version, "1.1.0") {
            return Ok(());
        }
        self.run(inv, command, conf, None).map(drop)
    }
}
