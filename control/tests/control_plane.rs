//! The control plane: xvsctl and the command socket against a live xvsd forwarding real
//! traffic between namespaces.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::Lab;
use serde_json::{Value, json};

fn ping_summary(child: std::process::Child) -> (u32, u32) {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("transmitted"))
        .unwrap_or("");
    let num = |word: &str| {
        line.split(',')
            .find(|p| p.contains(word))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (num("transmitted"), num("received"))
}

#[test]
fn hot_add_and_remove_do_not_disturb_other_ports() {
    let Some(mut lab) = Lab::new("hot_add_and_remove_do_not_disturb_other_ports") else {
        return;
    };
    let a = lab.container(1, 1);
    let b = lab.container(2, 1);
    let c = lab.container(3, 1);
    let d = lab.xvsd(&[&a.port, &b.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));

    let pinger = a.spawn(&["ping", "-n", "-q", "-i", "0.02", "-c", "250", &b.ip]);
    for _ in 0..2 {
        let out = d.ctl(&["add-port", &c.port]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            a.wait_ping(&c.ip, Duration::from_secs(3)),
            "new port does not forward"
        );
        let out = d.ctl(&["del-port", &c.port]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(a.ping(&c.ip, 2, 0.1), 0, "removed port still forwards");
    }
    let (sent, received) = ping_summary(pinger);
    assert_eq!(sent, 250);
    assert_eq!(
        received, sent,
        "pings between a and b were lost during hot add/remove"
    );
    // No frame leaked: every port removal gave its frames back.
    let show = d.call("show", json!({}));
    assert_eq!(show["ports"].as_array().unwrap().len(), 2);
}

#[test]
fn counters_match_the_namespaces_own() {
    let Some(mut lab) = Lab::new("counters_match_the_namespaces_own") else {
        return;
    };
    let a = lab.container(1, 2);
    let b = lab.container(2, 2);
    let d = lab.xvsd(&[&a.port, &b.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(300));
    let port_before = d.port_counters();
    let a_tx = a.counter("tx_packets");
    let a_rx = a.counter("rx_packets");
    let b_tx = b.counter("tx_packets");
    let b_rx = b.counter("rx_packets");
    assert_eq!(a.ping(&b.ip, 100, 0.01), 100);
    std::thread::sleep(Duration::from_millis(300));
    let port_after = d.port_counters();
    let delta = |name: &str, i: usize| {
        let (b0, b1) = port_before[name];
        let (a0, a1) = port_after[name];
        if i == 0 { a0 - b0 } else { a1 - b1 }
    };
    let a_sent = a.counter("tx_packets") - a_tx;
    let a_got = a.counter("rx_packets") - a_rx;
    let b_sent = b.counter("tx_packets") - b_tx;
    let b_got = b.counter("rx_packets") - b_rx;
    assert!(
        a_sent >= 100 && b_sent >= 100,
        "a sent {a_sent}, b sent {b_sent}"
    );
    assert_eq!(delta(&a.port, 0), a_sent, "port a rx vs a's eth0 tx");
    assert_eq!(delta(&b.port, 0), b_sent, "port b rx vs b's eth0 tx");
    assert_eq!(delta(&a.port, 1), a_got, "port a tx vs a's eth0 rx");
    assert_eq!(delta(&b.port, 1), b_got, "port b tx vs b's eth0 rx");

    // The CLI shows the same, as a table and as JSON; --rate prints live rates.
    let out = d.ctl(&["dump-ports", &a.port, "--json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ports"][0]["name"], a.port.as_str());
    assert_eq!(
        v["ports"][0]["rx_packets"].as_u64().unwrap(),
        port_after[&a.port].0
    );
    let out = d.ctl(&["dump-ports", "--rate", "--count", "1", "--interval", "0.3"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("RX_PPS"));

    // The learned addresses, with ages.
    let out = d.ctl(&["fdb", "show"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for (c, port) in [(&a, &a.port), (&b, &b.port)] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&c.mac()))
            .unwrap_or_else(|| panic!("{} missing from fdb:\n{text}", c.mac()));
        assert!(line.contains(port.as_str()), "{line}");
    }
    assert!(d.ctl(&["fdb", "flush"]).status.success());
    let v = d.call("fdb-show", json!({}));
    assert!(
        v["entries"].as_array().unwrap().is_empty(),
        "flush left {v}"
    );
    assert_eq!(a.ping(&b.ip, 3, 0.05), 3, "relearning after flush");
}

fn raw(socket: &std::path::Path) -> (UnixStream, BufReader<UnixStream>) {
    let s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn answer(reader: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).expect("an answer");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {line:?}"))
}

#[test]
fn bad_clients_get_errors_and_forwarding_goes_on() {
    let Some(mut lab) = Lab::new("bad_clients_get_errors_and_forwarding_goes_on") else {
        return;
    };
    let a = lab.container(1, 3);
    let b = lab.container(2, 3);
    let d = lab.xvsd(&[&a.port, &b.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode");

    let pinger = a.spawn(&["ping", "-n", "-q", "-i", "0.02", "-c", "200", &b.ip]);

    // A client that connects and says nothing.
    let (_silent, _) = raw(&d.socket);

    // Invalid JSON, invalid UTF-8, not a request, unknown method, bad parameters: each gets
    // an error with the right code, and the connection stays usable.
    let (mut s, mut r) = raw(&d.socket);
    for (line, code) in [
        (&b"{this is not json\n"[..], -32700),
        (b"\xff\xfe\xfd\n", -32700),
        (b"{\"jsonrpc\":\"2.0\",\"id\":1}\n", -32600),
        (b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"frobnicate\"}\n", -32601),
        (b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"del-port\",\"params\":{\"nme\":1}}\n", -32602),
        (b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"del-port\",\"params\":{\"name\":\"nope0\"}}\n", 1),
    ] {
        s.write_all(line).unwrap();
        let v = answer(&mut r);
        assert_eq!(v["error"]["code"], code, "for {:?}: {v}", String::from_utf8_lossy(line));
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"version\"}\n")
        .unwrap();
    assert_eq!(answer(&mut r)["id"], 5);

    // A 10 MB line: an error, then the daemon hangs up.
    let (mut big, mut big_r) = raw(&d.socket);
    let chunk = vec![b'x'; 1 << 20];
    let mut wrote = 0;
    for _ in 0..10 {
        if big.write_all(&chunk).is_err() {
            break;
        }
        wrote += 1;
    }
    assert!(wrote >= 1);
    let v = answer(&mut big_r);
    assert_eq!(v["error"]["code"], 5, "{v}");

    // A client that disconnects in the middle of a request.
    {
        let (mut half, _) = raw(&d.socket);
        half.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"meth")
            .unwrap();
    }

    // Meanwhile a normal client is served, by the CLI too.
    let v = d.call("show", json!({}));
    assert_eq!(v["ports"].as_array().unwrap().len(), 2);
    assert!(d.ctl(&["show"]).status.success());

    let (sent, received) = ping_summary(pinger);
    assert_eq!(
        received, sent,
        "forwarding stalled while clients misbehaved"
    );
}

#[test]
fn a_second_daemon_on_the_same_socket_is_refused() {
    let Some(mut lab) = Lab::new("a_second_daemon_on_the_same_socket_is_refused") else {
        return;
    };
    let a = lab.container(1, 4);
    let b = lab.container(2, 4);
    let d = lab.xvsd(&[&a.port], &[]);
    let out = std::process::Command::new(xvs_testkit::bin_path("xvsd"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["--port", &b.port])
        .arg("--state-dir")
        .arg(lab.path("second-state"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "second daemon started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another xvsd is running"), "{err}");
    // The first one is untouched.
    assert!(d.ctl(&["show"]).status.success());
}

#[test]
fn xvsctl_fails_clearly() {
    let Some(mut lab) = Lab::new("xvsctl_fails_clearly") else {
        return;
    };
    let a = lab.container(1, 5);
    let nowhere = lab.path("nobody.ctl");
    let out = std::process::Command::new(xvs_testkit::bin_path("xvsctl"))
        .arg("--socket")
        .arg(&nowhere)
        .arg("show")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));

    let d = lab.xvsd(&[&a.port], &[]);
    for (args, needle) in [
        (&["del-port", "nope0"][..], "no such port"),
        (&["add-port", "nope0"], "no such interface"),
        (&["add-port", &a.port], "already a port"),
        (
            &["set-port", &a.port, "vlan", "access", "9999"],
            "out of range",
        ),
        (&["set-port", &a.port, "mtu", "9000"], "vlan"),
        (&["attach", "xvs-no-such-netns"], "not found"),
        (
            &[
                "attach",
                &a.ns,
                "--ifname",
                "net9",
                "--mac",
                "ff:ff:ff:ff:ff:ff",
            ],
            "multicast address",
        ),
        (
            &["attach", &a.ns, "--ifname", "net9", "--mac", "0:0:0:0:0:0"],
            "all zeros",
        ),
    ] {
        let out = d.ctl(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "not one line: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            err.matches("(os error").count() <= 1,
            "a cause twice: {err}"
        );
    }
    // The refused attaches made nothing.
    assert!(!a.exec(&["ip", "link", "show", "net9"]).status.success());
    let out = d.ctl(&["list-commands"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("dump-ports"));
}

#[test]
fn idle_clients_cannot_lock_out_the_cli() {
    let Some(mut lab) = Lab::new("idle_clients_cannot_lock_out_the_cli") else {
        return;
    };
    let a = lab.container(1, 33);
    let d = lab.xvsd(&[&a.port], &[]);
    // As many connections as the daemon takes, all silent, held open meanwhile.
    let idle: Vec<UnixStream> = (0..control::server::MAX_CLIENTS)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let out = d.ctl(&["show"]);
        assert!(
            out.status.success(),
            "locked out: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The one idle the longest made room (a CLI that left frees its slot for the next);
    // the rest are still connected.
    let (mut s, mut r) = raw(&d.socket);
    s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"version\"}\n")
        .unwrap();
    assert_eq!(answer(&mut r)["id"], 1);
    let mut closed = 0;
    for mut c in idle {
        c.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        if matches!(std::io::Read::read(&mut c, &mut byte), Ok(0)) {
            closed += 1;
        }
    }
    assert!(
        (1..=4).contains(&closed),
        "{closed} idle clients were evicted"
    );
}

/// Runs `cmd` with its stdout a pipe whose reader is already gone; returns its exit status
/// and stderr.
fn with_reader_gone(cmd: &mut std::process::Command) -> (std::process::ExitStatus, String) {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn clis_exit_quietly_when_their_reader_goes() {
    use std::os::unix::process::ExitStatusExt;
    let Some(mut lab) = Lab::new("clis_exit_quietly_when_their_reader_goes") else {
        return;
    };
    let a = lab.container(1, 34);
    let b = lab.container(2, 34);
    let d = lab.xvsd(&[&a.port, &b.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    let xvsctl = |args: &[&str]| {
        let mut cmd = std::process::Command::new(xvs_testkit::bin_path("xvsctl"));
        cmd.arg("--socket").arg(&d.socket).args(args);
        cmd
    };
    let mut cni = std::process::Command::new(xvs_testkit::bin_path("xvs-cni"));
    cni.env("CNI_COMMAND", "VERSION");
    for (name, mut cmd) in [
        ("fdb show", xvsctl(&["fdb", "show"])),
        ("show --json", xvsctl(&["show", "--json"])),
        (
            "dump-ports --rate",
            xvsctl(&["dump-ports", "--rate", "--interval", "0.1"]),
        ),
        ("xvs-cni VERSION", cni),
    ] {
        let (status, stderr) = with_reader_gone(&mut cmd);
        assert!(stderr.is_empty(), "{name} wrote to stderr: {stderr}");
        // As a tool that SIGPIPE killed, or one that stopped with success.
        assert!(
            matches!(status.code(), Some(0 | 141)) || status.signal() == Some(SIGPIPE),
            "{name}: {status}"
        );
    }

    // `xvsctl dump-ports --rate | head -c1`: the loop ends when head has had its byte.
    let mut rate = xvsctl(&["dump-ports", "--rate", "--interval", "0.1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let head = std::process::Command::new("head")
        .arg("-c1")
        .stdin(rate.stdout.take().unwrap())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(head.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rate.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = rate.kill();
            panic!("xvsctl dump-ports --rate kept running after its reader left");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = rate.wait_with_output().unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(141), "{}", out.status);
}

/// SIGPIPE's number on Linux.
const SIGPIPE: i32 = 13;
