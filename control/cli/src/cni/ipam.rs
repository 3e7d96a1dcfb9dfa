//! Running the delegated IPAM plugin (spec section 4): found through `CNI_PATH`, given the
//! whole network configuration and our parameters, its stderr passed through to ours.
//!
//! A plugin need not read its input: the reference plugins' `skel` never reads it for
//! `VERSION`, and any plugin that fails on its environment exits before reading. So writing
//! the configuration may fail with EPIPE; that says nothing, and what the plugin printed and
//! how it exited are what is reported (its error object, its exit status, its stderr).
//!
//! The plugin may be older than the configuration: Debian's host-local 1.1.1 speaks up to
//! 1.0.0 while a configuration may say 1.1.0. So each call first asks the plugin's `VERSION`
//! and, when it lacks the configuration's version, speaks the newest older one it has; the
//! addresses it returns do not depend on the version.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output, Stdio};

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

/// The last `n` characters of `text` (the end of a long stderr is where the reason is).
fn last_chars(text: &str, n: usize) -> &str {
    let skip = text.chars().count().saturating_sub(n);
    text.char_indices()
        .nth(skip)
        .map_or(text, |(i, _)| &text[i..])
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
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail("running", e))?;
        let input = serde_json::to_vec(stdin).expect("JSON values serialize");
        let pipe = child.stdin.take();
        // The input is written while the plugin's output is read, so that neither side waits
        // for the other whatever their sizes.
        let (output, written) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || match pipe {
                Some(mut pipe) => pipe.write_all(&input),
                None => Ok(()),
            });
            let output = child.wait_with_output();
            (output, writer.join().unwrap_or(Ok(())))
        });
        let output = output.map_err(|e| fail("waiting for", e))?;
        // Its stderr still reaches ours, as when it was inherited.
        let _ = std::io::stderr().write_all(&output.stderr);
        // EPIPE only means that the plugin did not read its input; what it did says why.
        let unwritten = written.err().filter(|e| e.kind() != ErrorKind::BrokenPipe);
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
        Err(self.failure(&output, parsed.as_ref(), unwritten))
    }

    /// The error of a plugin that exited with a failure: its own error object if it printed
    /// one, with its exit status, its stderr, and our failure to give it its input if any.
    fn failure(
        &self,
        output: &Output,
        error: Option<&Value>,
        unwritten: Option<std::io::Error>,
    ) -> CniError {
        let text = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let code = error
            .and_then(|e| e["code"].as_u64())
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(code::INTERNAL);
        let said = match error.and_then(|e| e["msg"].as_str()) {
            Some(msg) => msg.to_owned(),
            None if text.trim().is_empty() => "failed and printed nothing".to_owned(),
            None => format!("failed: {}", text.trim()),
        };
        let mut details = Vec::new();
        if let Some(d) = error
            .and_then(|e| e["details"].as_str())
            .filter(|d| !d.is_empty())
        {
            details.push(d.to_owned());
        }
        if !stderr.trim().is_empty() {
            details.push(format!("its stderr: {}", last_chars(stderr.trim(), 2000)));
        }
        if let Some(e) = unwritten {
            details.push(format!("writing its input failed: {e}"));
        }
        CniError::new(
            code,
            format!("IPAM plugin {}: {said} ({})", self.name, output.status),
        )
        .details(details.join("; "))
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A directory of its own with an executable `script` in it, removed on drop.
    struct FakePlugin {
        dir: PathBuf,
        ipam: Ipam,
    }

    impl FakePlugin {
        fn new(script: &str) -> FakePlugin {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "xvs-fake-ipam-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let binary = dir.join("fake-ipam");
            std::fs::write(&binary, format!("#!/bin/sh\n{script}")).unwrap();
            std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
            FakePlugin {
                ipam: Ipam {
                    name: "fake-ipam".into(),
                    binary,
                    version: "1.0.0".into(),
                },
                dir,
            }
        }
    }

    impl Drop for FakePlugin {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A configuration too big for a pipe's buffer: writing it fails with EPIPE whenever
    /// the plugin exits without reading it.
    fn big_config() -> Value {
        json!({"cniVersion": "1.0.0", "padding": "x".repeat(1 << 20)})
    }

    #[test]
    fn a_plugin_that_answers_without_reading_is_heard() {
        // As the reference plugins do for VERSION: they never read their input.
        let fake = FakePlugin::new(
            "echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}'\n",
        );
        let answer = fake
            .ipam
            .exec(&[("CNI_COMMAND", "VERSION".into())], &big_config())
            .unwrap()
            .unwrap();
        assert_eq!(answer["supportedVersions"][1], "1.0.0");
    }

    #[test]
    fn a_plugin_that_fails_without_reading_says_why() {
        let fake = FakePlugin::new(
            "echo 'host-local: range 10.9.0.0/30 is full' >&2\n\
             echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"no IP addresses available\",\
             \"details\":\"range set 10.9.0.0/30\"}'\n\
             exit 3\n",
        );
        let e = fake
            .ipam
            .exec(&[("CNI_COMMAND", "ADD".into())], &big_config())
            .unwrap_err();
        assert_eq!(e.code, 11, "{e}");
        let text = e.to_string();
        for needle in [
            "IPAM plugin fake-ipam: no IP addresses available",
            "exit status: 3",
            "range set 10.9.0.0/30",
            "host-local: range 10.9.0.0/30 is full",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
        assert!(!text.contains("Broken pipe"), "{text}");
    }

    #[test]
    fn a_plugin_that_dies_without_a_word_is_reported_with_its_status() {
        let fake = FakePlugin::new("kill -TERM $$\n");
        let e = fake
            .ipam
            .exec(&[("CNI_COMMAND", "ADD".into())], &big_config())
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("signal: 15"), "{text}");
        assert!(text.contains("printed nothing"), "{text}");
    }
}
