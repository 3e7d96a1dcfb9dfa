//! xvs-cni: a CNI plugin that wires containers to xvsd.
//!
//! Runtimes run it with `CNI_COMMAND` and the other `CNI_*` variables set and the network
//! configuration on standard input; it prints a result, or an error object, on standard output.
//! Logs go to standard error (`RUST_LOG`, default `warn`). See `xvs_cli::cni`.

use std::io::Read;

use xvs_cli::cni::plugin::Failure;
use xvs_cli::cni::types::{CniError, LATEST, SUPPORTED_VERSIONS, code};
use xvs_cli::cni::{Outcome, run};
use xvs_sys::outln;

const ABOUT: &str = "xvs-cni: CNI plugin for the xvs userspace switch (xvsd)";

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    if std::env::var_os("CNI_COMMAND").is_none_or(|c| c.is_empty()) {
        // Run by a person, as the reference plugins do: say what this is.
        eprintln!("{ABOUT} {}", env!("CARGO_PKG_VERSION"));
        eprintln!(
            "CNI protocol versions supported: {}",
            SUPPORTED_VERSIONS.join(", ")
        );
        return;
    }
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(&|name| std::env::var(name).ok(), &stdin),
        Err(e) => Err(Failure {
            error: CniError::new(code::IO_FAILURE, "error reading from stdin")
                .details(e.to_string()),
            version: LATEST.to_owned(),
        }),
    };
    match outcome {
        Ok(Outcome::Print(result)) => {
            outln!(
                "{}",
                serde_json::to_string(&result).expect("JSON values serialize")
            );
        }
        Ok(Outcome::Silent) => {}
        Err(failure) => {
            eprintln!("xvs-cni: {}", failure.error);
            outln!(
                "{}",
                serde_json::to_string(&failure.error.to_json(&failure.version))
                    .expect("JSON values serialize")
            );
            std::process::exit(1);
        }
    }
}
