//! xvsd: the xvs switch daemon.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use dataplane::{PortOptions, Switch, SwitchOptions};

#[derive(Debug, Parser)]
#[command(version, about = "The xvs userspace switch daemon")]
struct Args {
    /// An interface to switch (repeatable).
    #[arg(long = "port", value_name = "IF")]
    ports: Vec<String>,
    /// CPUs of the workers, one worker per CPU (e.g. "1" or "0,1").
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let workers = match &args.cpus {
        Some(list) => list
            .split(',')
            .map(|c| c.trim().parse::<usize>().map(Some))
            .collect::<Result<Vec<_>, _>>()
            .context("--cpus wants a comma-separated list of CPU numbers")?,
        None => vec![None],
    };
    let options = SwitchOptions {
        workers,
        ..SwitchOptions::default()
    };
    let mut switch = Switch::start(options, flowtable::Config::default())?;
    for name in &args.ports {
        let info = switch
            .add_port(name, &PortOptions::default())
            .with_context(|| format!("adding port {name}"))?;
        tracing::info!(?info, "port ready");
    }
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        switch.check_ports();
    }
    tracing::info!("stopping");
    switch.shutdown();
    Ok(())
}
