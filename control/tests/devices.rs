//! Devices that must not be ports: xvsd refuses them with a reason before it attaches
//! anything. The daemon runs inside a namespace of the test, so that the loopback device it
//! is offered is the namespace's, never the host's.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Container, Lab};
use serde_json::json;
use xvs_proto::client::Client;
use xvs_testkit::{bin_path, netns_command};

fn ctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(bin_path("xvsctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run xvsctl")
}

fn in_ns(c: &Container, args: &[&str]) {
    let out = c.exec(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts xvsd inside `c`'s namespace on `socket` (killed with the lab) and waits until it
/// answers.
fn xvsd_in(lab: &mut Lab, c: &Container, socket: &Path) -> Client {
    let log_path = lab.path("xvsd-in-ns.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = netns_command(&c.ns, bin_path("xvsd"))
        .arg("--socket")
        .arg(socket)
        .args(["--upcall-dev", "xu0"])
        // A state of its own: never the host's /var/lib/xvs.
        .arg("--state-dir")
        .arg(lab.path("state-in-ns"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn xvsd");
    lab.keep(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut client) = Client::connect(socket)
            && client.call_raw("version", json!({})).is_ok()
        {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "xvsd did not start: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unsuitable_devices_are_refused_before_anything_is_attached() {
    let Some(mut lab) = Lab::new("unsuitable_devices_are_refused_before_anything_is_attached")
    else {
        return;
    };
    let c = lab.bare_container(1, "");
    in_ns(&c, &["ip", "link", "set", "lo", "up"]);
    // A bridge with one end of a veth in it; the other end is free.
    in_ns(&c, &["ip", "link", "add", "br0", "type", "bridge"]);
    in_ns(
        &c,
        &[
            "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ],
    );
    in_ns(&c, &["ip", "link", "set", "v0", "master", "br0"]);
    for dev in ["br0", "v0", "v1"] {
        in_ns(&c, &["ip", "link", "set", dev, "up"]);
    }
    let socket = lab.path("in-ns.ctl");
    let mut client = xvsd_in(&mut lab, &c, &socket);

    for (dev, reason) in [
        ("lo", "it is the loopback device"),
        ("v0", "it is a port of the bridge br0"),
        ("xu0", "it is this switch's upcall device"),
        ("xu0x", "it is this switch's upcall device"),
    ] {
        let out = ctl(&socket, &["add-port", dev]);
        assert!(!out.status.success(), "add-port {dev} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "not one line: {err}");
        assert!(
            err.contains(&format!("{dev} cannot be a port: {reason}")),
            "{dev}: {err}"
        );
    }
    // Nothing was attached: the namespace's own traffic on lo is untouched.
    let lo = c.exec(&["ip", "-d", "link", "show", "dev", "lo"]);
    assert!(
        !String::from_utf8_lossy(&lo.stdout).contains("xdp"),
        "{}",
        String::from_utf8_lossy(&lo.stdout)
    );
    assert_eq!(c.ping("127.0.0.1", 3, 0.05), 3);

    // A free device is taken, and is the only port.
    let out = ctl(&socket, &["add-port", "v1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let show = client.call_raw("show", json!({})).unwrap();
    let ports: Vec<&str> = show["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(ports, ["v1"]);
}
