//! MAC learning at its edges: frames whose source no host may have, and a full MAC table.
//! Frames are made by hand (an AF_PACKET socket in the sending namespace) so that their
//! source MACs can be anything.

mod common;

use std::time::Duration;

use common::{Container, Daemon, Lab};
use serde_json::{Value, json};

/// Sends `count` UDP frames out of `c`'s eth0 by an AF_PACKET socket, `gap` seconds apart:
/// to `dst_mac` and `dst_ip`:9999, from `c`'s IP. The source MAC is `src_mac`, or with
/// `"each"` a new one for every frame (02:00:00:01:00:00 up).
const SEND_FRAMES: &str = r#"
import socket, struct, sys, time
dst, src, sip, dip, count, gap = sys.argv[1:7]
def mac(text): return bytes.fromhex(text.replace(':', ''))
def csum(header):
    s = sum(struct.unpack('!10H', header))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
payload = b'x' * 32
udp = struct.pack('!HHHH', 40000, 9999, 8 + len(payload), 0) + payload
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                 socket.inet_aton(sip), socket.inet_aton(dip))
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
for i in range(int(count)):
    source = struct.pack('!HI', 0x0200, 0x10000 + i) if src == 'each' else mac(src)
    s.send(mac(dst) + source + b'\x08\x00' + ip + udp)
    if float(gap) > 0:
        time.sleep(float(gap))
"#;

fn send_frames(from: &Container, dst: &Container, src_mac: &str, count: u32, gap: f64) {
    let out = from.exec(&[
        "python3",
        "-c",
        SEND_FRAMES,
        &dst.mac(),
        src_mac,
        &from.ip,
        &dst.ip,
        &count.to_string(),
        &gap.to_string(),
    ]);
    assert!(
        out.status.success(),
        "sending frames: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The number of `cause` drops of port `port`.
fn drops(d: &Daemon, port: &str, cause: &str) -> u64 {
    let v = d.call("dump-ports", json!({"name": port}));
    v["ports"][0]["drops"][cause]
        .as_u64()
        .unwrap_or_else(|| panic!("no {cause} drop counter: {v}"))
}

fn fdb_macs(d: &Daemon) -> Vec<String> {
    let fdb = d.call("fdb-show", json!({}));
    fdb["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["mac"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn invalid_source_macs_are_dropped_and_never_learned() {
    let Some(mut lab) = Lab::new("invalid_source_macs_are_dropped_and_never_learned") else {
        return;
    };
    if !lab.require("python3") {
        return;
    }
    let a = lab.container(1, 31);
    let b = lab.container(2, 31);
    let d = lab.xvsd(&[&a.port, &b.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));

    // The same datagram from a's own MAC first: with the fast path on, the kernel takes the
    // flow over, and its entry must not carry the frames below, which differ only in source.
    send_frames(&a, &b, &a.mac(), 300, 0.002);
    let fast_path = d.call("show", json!({}))["fast_path"] == json!(true);
    if fast_path {
        let entries = d.call("dump-fast-path", json!({}));
        let valid = entries["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["in_port"] == a.port.as_str() && e["dl_src"] == a.mac().as_str());
        assert!(valid, "the valid flow is not in the kernel: {entries}");
    }

    let rx = b.counter("rx_packets");
    let invalid = [
        "00:00:00:00:00:00",
        "01:00:5e:00:00:01",
        "ff:ff:ff:ff:ff:ff",
    ];
    for src in invalid {
        send_frames(&a, &b, src, 100, 0.002);
    }
    std::thread::sleep(Duration::from_millis(300));
    let leaked = b.counter("rx_packets") - rx;
    assert!(
        leaked <= 3,
        "b received {leaked} of 300 frames with invalid sources"
    );
    assert!(
        drops(&d, &a.port, "invalid_source") >= 300,
        "drops not counted: {}",
        d.call("dump-ports", json!({"name": a.port}))
    );
    let macs = fdb_macs(&d);
    for src in invalid {
        assert!(!macs.iter().any(|m| m == src), "{src} learned: {macs:?}");
    }
    if fast_path {
        let entries: Value = d.call("dump-fast-path", json!({}));
        assert!(
            !entries["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| invalid.contains(&e["dl_src"].as_str().unwrap_or_default())),
            "a kernel entry for an invalid source: {entries}"
        );
    }
    // The valid source still goes through.
    assert_eq!(a.ping(&b.ip, 3, 0.1), 3);
}

#[test]
fn a_full_mac_table_keeps_forwarding_known_hosts() {
    let Some(mut lab) = Lab::new("a_full_mac_table_keeps_forwarding_known_hosts") else {
        return;
    };
    if !lab.require("python3") {
        return;
    }
    let a = lab.container(1, 32);
    let b = lab.container(2, 32);
    let c = lab.container(3, 32);
    let d = lab.xvsd(&[&a.port, &b.port, &c.port], &["--mac-max", "16"]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    assert!(a.wait_ping(&c.ip, Duration::from_secs(5)));

    // c floods frames toward a, each from a new source: the table fills at once.
    let a_rx = a.counter("rx_packets");
    let b_rx = b.counter("rx_packets");
    send_frames(&c, &a, "each", 3000, 0.0);
    std::thread::sleep(Duration::from_millis(300));
    let leaked = b.counter("rx_packets") - b_rx;
    let delivered = a.counter("rx_packets") - a_rx;
    assert!(
        leaked <= 5,
        "b received {leaked} of the frames to a (a got {delivered})"
    );
    assert!(delivered >= 1500, "a got only {delivered} of 3000 frames");

    let fdb = d.call("fdb-show", json!({}));
    let entries = fdb["entries"].as_array().unwrap();
    assert!(entries.len() <= 16, "{} entries", entries.len());
    assert_eq!(fdb["capacity"], 16);
    let not_learned = fdb["not_learned"].as_u64().unwrap();
    assert!(not_learned >= 1000, "not_learned {not_learned}");
    for host in [&a, &b, &c] {
        assert!(
            entries
                .iter()
                .any(|e| e["mac"] == host.mac() && e["port"] == host.port.as_str()),
            "{} lost its entry: {fdb}",
            host.mac()
        );
    }
    let out = d.ctl(&["fdb", "show"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "of at most 16 entries; {not_learned} source(s) not learned"
        )),
        "{text}"
    );
    assert_eq!(a.ping(&b.ip, 3, 0.1), 3);
}
