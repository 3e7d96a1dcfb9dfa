//! xvs-docker-plugin: a Docker network plugin (libnetwork remote driver) backed by xvsd.
//!
//! Serves the plugin API (HTTP/1.1 POSTs with JSON bodies) on a Unix socket; Docker finds it by
//! the socket's name under /run/docker/plugins (`xvs.sock` makes the driver `xvs`). Requests are
//! answered one at a time, in order, by `xvs_cli::docker::Driver`.
//!
//! HTTP comes from tiny_http: small, synchronous (no async runtime), and it serves Unix
//! sockets; it handles what Go's HTTP client may send (keep-alive, chunked bodies,
//! `Expect: 100-continue`) so that we need not.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use xvs_cli::docker::{CONTENT_TYPE, Driver, DriverOptions, default_socket, parse_vlan_range};
use xvs_proto::DEFAULT_SOCKET;

/// Largest request body accepted.
const MAX_BODY: u64 = 1 << 20;

#[derive(Debug, Parser)]
#[command(version, about = "Docker network plugin for the xvs switch")]
struct Args {
    /// The plugin socket Docker connects to.
    #[arg(long, value_name = "PATH", default_value = default_socket().as_os_str())]
    socket: PathBuf,
    /// xvsd's command socket.
    #[arg(long, value_name = "PATH", env = "XVS_SOCKET", default_value = DEFAULT_SOCKET)]
    xvs_socket: PathBuf,
    /// Where networks and endpoints are remembered across restarts.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/var/lib/xvs/docker-plugin.json"
    )]
    state: PathBuf,
    /// VLANs to give networks that do not ask for one (`-o xvs.vlan=N`).
    #[arg(long, value_name = "A-B", default_value = "100-4094", value_parser = parse_vlan_range)]
    vlans: std::ops::RangeInclusive<u16>,
    /// MTU of the veths (default: the kernel's, 1500).
    #[arg(long)]
    mtu: Option<u32>,
    /// Leave the networks' gateway addresses alone: no internal port per network (by default
    /// the host gets each network's IPAM gateway on an internal port of its VLAN, which
    /// masquerades unless the network was created with -o
    /// com.docker.network.bridge.enable_ip_masquerade=false).
    #[arg(long)]
    no_gateway: bool,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()) {
        tracing::error!("{}", xvs_cli::message::one_line(&e));
        std::process::exit(1);
    }
}

/// Binds the plugin socket, replacing a stale one but never a live one.
fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!("{} is in use: is another plugin running?", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut driver = Driver::new(DriverOptions {
        xvs_socket: args.xvs_socket,
        state_path: Some(args.state),
        vlans: args.vlans,
        mtu: args.mtu,
        gateway: !args.no_gateway,
    })?;
    let listener = bind(&args.socket)?;
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| anyhow::anyhow!("serving {}: {e}", args.socket.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    tracing::info!(socket = %args.socket.display(), "xvs-docker-plugin ready");
    let content_type =
        tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE).expect("a valid header");
    // No resync with xvsd: xvsd saves its ports (ours among them, with their external_ids)
    // and restores them when it restarts.
    while !stop.load(Ordering::Relaxed) {
        let mut request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("accepting a request: {e}");
                continue;
            }
        };
        let (status, body) = if *request.method() != tiny_http::Method::Post {
            (
                405,
                serde_json::json!({"Err": "the plugin API takes POST requests"}),
            )
        } else {
            let mut bytes = Vec::new();
            match request
                .as_reader()
                .take(MAX_BODY + 1)
                .read_to_end(&mut bytes)
            {
                Ok(n) if n as u64 > MAX_BODY => {
                    (413, serde_json::json!({"Err": "request body too large"}))
                }
                Ok(_) => {
                    let url = request.url().to_owned();
                    let reply = driver.handle(&url, &bytes);
                    tracing::debug!(url, status = reply.status, "request");
                    (reply.status, reply.body)
                }
                Err(e) => (
                    400,
                    serde_json::json!({"Err": format!("reading the body: {e}")}),
                ),
            }
        };
        let response = tiny_http::Response::from_string(body.to_string())
            .with_status_code(status)
            .with_header(content_type.clone());
        if let Err(e) = request.respond(response) {
            tracing::warn!("answering a request: {e}");
        }
    }
    tracing::info!("stopping");
    // Dropping the server removes the socket file.
    drop(server);
    Ok(())
}
