//! VLANs: access and trunk ports carry untagged and tagged frames as OVS's vlan_mode does, and
//! nothing leaks between VLANs. The kernel here has no 802.1Q module, so tagged frames are sent
//! with a raw AF_PACKET socket and checked with tcpdump's link-level view.

mod common;

use std::process::Child;
use std::time::Duration;

use common::{Container, Lab};
use serde_json::json;

const SEND: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
s.send(bytes.fromhex(sys.argv[2]))
"#;

/// An ARP request for `target` from `src_mac`, tagged with `vlan` if given, as hex.
fn arp_request(src_mac: &str, target: [u8; 4], vlan: Option<u16>) -> String {
    let mac: Vec<u8> = src_mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&mac);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[10, 99, 0, 1, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&target);
    f.resize(f.len().max(60), 0);
    f.iter().map(|b| format!("{b:02x}")).collect()
}

fn send(c: &Container, hex: &str) {
    let out = c.exec(&["python3", "-c", SEND, "eth0", hex]);
    assert!(
        out.status.success(),
        "send: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn capture(c: &Container, filter: &str) -> Child {
    let mut args = vec![
        "timeout", "-s", "INT", "4", "tcpdump", "-i", "eth0", "-e", "-n", "-l",
    ];
    args.extend(filter.split_whitespace());
    c.spawn(&args)
}

fn lines(child: Child) -> Vec<String> {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn access_and_trunk_ports_keep_vlans_apart() {
    let Some(mut lab) = Lab::new("access_and_trunk_ports_keep_vlans_apart") else {
        return;
    };
    if !lab.require("tcpdump") || !lab.require("python3") {
        return;
    }
    // One subnet on purpose: only the VLANs separate these hosts.
    let a1 = lab.container(1, 5);
    let a2 = lab.container(2, 5);
    let b = lab.container(3, 5);
    let t = lab.container(4, 5);
    let d = lab.xvsd(&[&a1.port, &a2.port, &b.port, &t.port], &[]);
    for (c, vlan) in [
        (&a1, json!({"mode":"access","tag":10})),
        (&a2, json!({"mode":"access","tag":10})),
        (&b, json!({"mode":"access","tag":20})),
        (&t, json!({"mode":"trunk","trunks":[10,20]})),
    ] {
        d.call("set-port", json!({"name": c.port, "vlan": vlan}));
    }

    // Same VLAN talks; another VLAN does not, though it is the same subnet.
    assert!(a1.wait_ping(&a2.ip, Duration::from_secs(5)));
    assert_eq!(a1.ping(&b.ip, 2, 0.2), 0, "VLAN 10 reached VLAN 20");

    // Untagged broadcast from an access port of VLAN 10: untagged on the other access port,
    // tagged 10 on the trunk, absent from VLAN 20.
    let filter = "arp and host 10.99.0.77";
    let (ca2, cb, ct) = (
        capture(&a2, filter),
        capture(&b, filter),
        capture(&t, filter),
    );
    std::thread::sleep(Duration::from_millis(1500));
    send(&a1, &arp_request(&a1.mac(), [10, 99, 0, 77], None));
    let (sa2, sb, st) = (lines(ca2), lines(cb), lines(ct));
    assert_eq!(sa2.len(), 1, "a2: {sa2:?}");
    assert!(!sa2[0].contains("vlan"), "access port got a tag: {sa2:?}");
    assert!(sb.is_empty(), "VLAN 20 saw VLAN 10's broadcast: {sb:?}");
    assert_eq!(st.len(), 1, "trunk: {st:?}");
    assert!(
        st[0].contains("vlan 10"),
        "trunk copy not tagged 10: {st:?}"
    );

    // Tagged frames from the trunk: VLAN 20 goes to b only, untagged; VLAN 10 to a1 and a2.
    let filter = "arp and host 10.99.0.88";
    let (ca1, ca2, cb) = (
        capture(&a1, filter),
        capture(&a2, filter),
        capture(&b, filter),
    );
    std::thread::sleep(Duration::from_millis(1500));
    send(&t, &arp_request(&t.mac(), [10, 99, 0, 88], Some(20)));
    let (sa1, sa2, sb) = (lines(ca1), lines(ca2), lines(cb));
    assert!(
        sa1.is_empty() && sa2.is_empty(),
        "VLAN 10 saw VLAN 20: {sa1:?} {sa2:?}"
    );
    assert_eq!(sb.len(), 1, "b: {sb:?}");
    assert!(!sb[0].contains("vlan"), "access port got a tag: {sb:?}");

    let filter = "arp and host 10.99.0.99";
    let (ca1, cb) = (capture(&a1, filter), capture(&b, filter));
    std::thread::sleep(Duration::from_millis(1500));
    send(&t, &arp_request(&t.mac(), [10, 99, 0, 99], Some(10)));
    let (sa1, sb) = (lines(ca1), lines(cb));
    assert_eq!(sa1.len(), 1, "a1: {sa1:?}");
    assert!(sb.is_empty(), "VLAN 20 saw VLAN 10: {sb:?}");

    // A VLAN the trunk does not carry is dropped at ingress and counted.
    let before =
        d.call("dump-ports", json!({"name": t.port}))["ports"][0]["drops"]["vlan_filtered"]
            .as_u64()
            .unwrap();
    send(&t, &arp_request(&t.mac(), [10, 99, 0, 66], Some(30)));
    std::thread::sleep(Duration::from_millis(300));
    let after = d.call("dump-ports", json!({"name": t.port}))["ports"][0]["drops"]["vlan_filtered"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before + 1);

    // MAC learning is per VLAN: the trunk's MAC was learned in both VLANs it spoke in.
    let fdb = d.call("fdb-show", json!({}));
    let vlans: Vec<u64> = fdb["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["mac"] == t.mac())
        .map(|e| e["vlan"].as_u64().unwrap())
        .collect();
    assert!(
        vlans.contains(&10) && vlans.contains(&20),
        "trunk MAC learned in {vlans:?}"
    );
}
