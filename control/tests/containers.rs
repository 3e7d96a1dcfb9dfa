//! Containers on xvs, end to end: `xvsctl attach`/`detach`, the CNI plugin invoked as a
//! runtime invokes it, and the Docker plugin driven with the requests Docker sends. Namespaces
//! stand in for containers; they start empty and the tools wire them.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Container, Daemon, Lab, link_exists};
use serde_json::{Value, json};

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ports(d: &Daemon) -> Vec<Value> {
    d.call("show", json!({}))["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every pair pings both ways.
fn ping_all(containers: &[&Container]) {
    for a in containers {
        for b in containers {
            if a.ns != b.ns {
                assert!(
                    a.wait_ping(&b.ip, Duration::from_secs(5)),
                    "{} cannot ping {} ({})",
                    a.ns,
                    b.ns,
                    b.ip
                );
            }
        }
    }
}

fn has_link_in(c: &Container, name: &str) -> bool {
    c.exec(&["ip", "link", "show", "dev", name])
        .status
        .success()
}

#[test]
fn attach_three_namespaces_then_detach_one() {
    let Some(mut lab) = Lab::new("attach_three_namespaces_then_detach_one") else {
        return;
    };
    let d = lab.xvsd(&[], &[]);
    let cs: Vec<Container> = (1..=3)
        .map(|i| lab.bare_container(i, &format!("10.61.0.{i}")))
        .collect();
    let mut port_of = Vec::new();
    for c in &cs {
        let out = d.ctl(&[
            "--json",
            "attach",
            &c.ns,
            "--ip",
            &format!("{}/24", c.ip),
            "--gw",
            "10.61.0.254",
            "--mtu",
            "1400",
        ]);
        let report: Value = serde_json::from_str(&ok(&out)).expect("JSON report");
        let port = report["port"].as_str().unwrap().to_owned();
        lab.track_link(&port);
        assert!(port.starts_with("xvs") && port.len() <= 15, "{port}");
        port_of.push(port);
    }
    let shown = ports(&d);
    assert_eq!(shown.len(), 3);
    for (c, port) in cs.iter().zip(&port_of) {
        let p = shown.iter().find(|p| p["name"] == **port).expect("port");
        assert_eq!(p["external_ids"]["container"], c.ns.as_str());
        assert_eq!(p["external_ids"]["ifname"], "eth0");
        let route = c.exec(&["ip", "route", "show", "default"]);
        assert!(String::from_utf8_lossy(&route.stdout).contains("via 10.61.0.254"));
        let link = c.exec(&["ip", "link", "show", "dev", "eth0"]);
        assert!(String::from_utf8_lossy(&link.stdout).contains("mtu 1400"));
    }
    // A second attach of the same interface is refused and changes nothing.
    assert!(
        !d.ctl(&["attach", &cs[0].ns, "--ip", "10.61.0.9/24"])
            .status
            .success()
    );
    assert_eq!(ports(&d).len(), 3);

    let refs: Vec<&Container> = cs.iter().collect();
    ping_all(&refs);
    if lab.require("iperf3") {
        let gbps = common::iperf_tcp(&mut lab, &cs[0], &cs[1], 2);
        eprintln!("iperf3 between attached namespaces: {gbps:.2} Gbit/s");
        assert!(gbps > 0.01, "iperf3 got {gbps} Gbit/s");
    }

    ok(&d.ctl(&["detach", &cs[2].ns]));
    assert!(!link_exists(&port_of[2]), "the host veth is left");
    assert!(!has_link_in(&cs[2], "eth0"), "the container end is left");
    let shown = ports(&d);
    assert_eq!(shown.len(), 2);
    assert!(shown.iter().all(|p| p["name"] != port_of[2].as_str()));
    ping_all(&refs[..2]);
    assert_eq!(cs[0].ping(&cs[2].ip, 2, 0.2), 0);
    // Detaching again finds nothing, and says so.
    assert!(!d.ctl(&["detach", &cs[2].ns]).status.success());

    // A failure half-way (xvsd refuses VLAN 5000 after the veth exists) leaves nothing.
    let out = d.ctl(&[
        "attach",
        &cs[2].ns,
        "--ip",
        "10.61.0.3/24",
        "--vlan",
        "5000",
    ]);
    assert!(!out.status.success());
    // The peer was made inside the namespace: without it there is no pair left.
    assert!(!has_link_in(&cs[2], "eth0"));
    assert_eq!(ports(&d).len(), 2);

    // By PID and path too: a process inside the namespace names it.
    let sleeper = cs[2].spawn(&["sleep", "30"]);
    let pid = sleeper.id().to_string();
    lab.keep(sleeper);
    // `ip netns exec` enters the namespace, then becomes `sleep`: wait for the first.
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .as_ref()
        == Some(&host_ns)
    {
        assert!(
            Instant::now() < deadline,
            "the sleeper never entered its namespace"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = d.ctl(&[
        "--json",
        "attach",
        &pid,
        "--ip",
        "10.61.0.3/24",
        "--ifname",
        "net1",
    ]);
    let report: Value = serde_json::from_str(&ok(&out)).unwrap();
    lab.track_link(report["port"].as_str().unwrap());
    assert!(has_link_in(&cs[2], "net1"));
    // The address now has another MAC; forget the old one rather than wait for the kernel to.
    ok(&cs[0].exec(&["ip", "neigh", "flush", "all"]));
    assert!(cs[0].wait_ping(&cs[2].ip, Duration::from_secs(5)));
    let path = format!("/run/netns/{}", cs[2].ns);
    ok(&d.ctl(&["detach", &path, "--ifname", "net1"]));
    assert!(!has_link_in(&cs[2], "net1"));
    assert_eq!(ports(&d).len(), 2);
}

/// Runs xvs-cni as a runtime does: the CNI variables (and nothing of ours), the
/// configuration on stdin. Returns whether it succeeded and what it printed.
fn cni(env: &[(&str, &str)], stdin: &Value) -> (bool, Value) {
    let mut child = Command::new(xvs_testkit::bin_path("xvs-cni"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run xvs-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    if !out.status.success() {
        eprintln!("xvs-cni stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    (out.status.success(), value)
}

const CNI_PATH: &str = "/usr/lib/cni";

#[test]
fn cni_plugin_as_a_runtime_calls_it() {
    let Some(mut lab) = Lab::new("cni_plugin_as_a_runtime_calls_it") else {
        return;
    };
    if !Path::new(CNI_PATH).join("host-local").exists() {
        xvs_testkit::skip!("no host-local in {CNI_PATH} (containernetworking-plugins)");
    }
    let mut d = lab.xvsd(&[], &[]);
    let xvs_socket = d.socket.clone();
    let network = format!("{}-net", lab.prefix);
    let data_dir = lab.path("ipam");
    let conf = |version: &str| {
        json!({
            "cniVersion": version,
            "name": network,
            "type": "xvs-cni",
            "socket": xvs_socket,
            "ipam": {
                "type": "host-local",
                "dataDir": data_dir,
                "ranges": [[{"subnet": "10.62.0.0/24", "gateway": "10.62.0.1"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        })
    };

    // VERSION first, as podman does.
    let (success, v) = cni(
        &[("CNI_COMMAND", "VERSION")],
        &json!({"cniVersion": "1.0.0"}),
    );
    assert!(success);
    assert_eq!(v["cniVersion"], "1.0.0");
    for version in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(
            v["supportedVersions"]
                .as_array()
                .unwrap()
                .contains(&json!(version))
        );
    }

    let mut cs = Vec::new();
    let mut results = Vec::new();
    for (i, version) in [(1u8, "1.0.0"), (2, "1.0.0"), (3, "0.4.0")] {
        let mut c = lab.bare_container(i, "");
        let netns = format!("/run/netns/{}", c.ns);
        let id = format!("{}-c{i}", lab.prefix);
        let args = if i == 2 {
            "IgnoreUnknown=1;K8S_POD_NAME=web2;MAC=02:62:00:00:00:02".to_owned()
        } else {
            format!("IgnoreUnknown=1;K8S_POD_NAME=web{i}")
        };
        let (success, result) = cni(
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", &id),
                ("CNI_NETNS", &netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", CNI_PATH),
                ("CNI_ARGS", &args),
            ],
            &conf(version),
        );
        assert!(success, "ADD {i}: {result}");
        assert_eq!(result["cniVersion"], version);
        let ip = &result["ips"][0];
        if version == "0.4.0" {
            assert_eq!(ip["version"], "4");
        } else {
            assert!(ip.get("version").is_none(), "1.0.0 has no ips[].version");
        }
        let iface = &result["interfaces"][ip["interface"].as_u64().unwrap() as usize];
        assert_eq!(iface["name"], "eth0");
        assert_eq!(iface["sandbox"], netns.as_str());
        let host = result["interfaces"][0]["name"].as_str().unwrap();
        lab.track_link(host);
        if i == 2 {
            assert_eq!(iface["mac"], "02:62:00:00:00:02");
            assert_eq!(c.mac(), "02:62:00:00:00:02");
        }
        let address = ip["address"].as_str().unwrap();
        c.ip = address.split('/').next().unwrap().to_owned();
        assert_eq!(ip["gateway"], "10.62.0.1");
        cs.push(c);
        results.push((id, netns, version, result));
    }
    let refs: Vec<&Container> = cs.iter().collect();
    ping_all(&refs);
    assert_eq!(ports(&d).len(), 3);

    // CHECK with the ADD's result passes; after the interface is deleted by hand it fails.
    let (id, netns, version, result) = &results[0];
    let mut check_conf = conf(version);
    check_conf["prevResult"] = result.clone();
    let env = |command: &'static str| {
        vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", id.as_str()),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_PATH),
        ]
    };
    let (success, out) = cni(&env("CHECK"), &check_conf);
    assert!(success, "CHECK: {out}");
    assert_eq!(out, Value::Null, "CHECK prints nothing on success");
    ok(&cs[0].exec(&["ip", "link", "del", "eth0"]));
    let (success, out) = cni(&env("CHECK"), &check_conf);
    assert!(!success);
    assert!(out["code"].as_u64().unwrap() > 0);
    assert!(out["msg"].as_str().unwrap().contains("eth0"), "{out}");

    // DEL twice: both succeed, and the address goes back to IPAM.
    let address = result["ips"][0]["address"].as_str().unwrap();
    let lease = data_dir
        .join(&network)
        .join(address.split('/').next().unwrap());
    assert!(lease.exists(), "host-local keeps {}", lease.display());
    for _ in 0..2 {
        let (success, out) = cni(&env("DEL"), &check_conf);
        assert!(success, "DEL: {out}");
    }
    assert!(!lease.exists(), "DEL did not release the address");
    assert_eq!(ports(&d).len(), 2);
    let host = result["interfaces"][0]["name"].as_str().unwrap();
    assert!(!link_exists(host));
    ping_all(&refs[1..]);

    // podman's stop and start: DEL (above), then ADD again for the same container.
    let (success, again) = cni(&env("ADD"), &conf(version));
    assert!(success, "ADD after DEL: {again}");
    let address = again["ips"][0]["address"].as_str().unwrap();
    cs[0].ip = address.split('/').next().unwrap().to_owned();
    let refs: Vec<&Container> = cs.iter().collect();
    ping_all(&refs);
    assert_eq!(ports(&d).len(), 3);

    // The spec's errors.
    let (id3, netns3, _, _) = &results[2];
    let add_env = vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", id3.as_str()),
        ("CNI_NETNS", netns3.as_str()),
        ("CNI_IFNAME", "eth1"),
        ("CNI_PATH", CNI_PATH),
    ];
    let mut child = Command::new(xvs_testkit::bin_path("xvs-cni"))
        .env_clear()
        .envs(add_env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{not json").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["code"], 6, "{err}");
    assert!(err["msg"].is_string() && err["cniVersion"].is_string());

    let no_netns: Vec<_> = add_env
        .iter()
        .copied()
        .filter(|(k, _)| *k != "CNI_NETNS")
        .collect();
    let (success, err) = cni(&no_netns, &conf("1.0.0"));
    assert!(!success);
    assert_eq!(err["code"], 4, "{err}");
    assert!(err["msg"].as_str().unwrap().contains("CNI_NETNS"));

    let (success, err) = cni(&add_env, &conf("9.9.9"));
    assert!(!success);
    assert_eq!(err["code"], 1, "{err}");

    let mut bad = conf("1.0.0");
    bad["vlan"] = json!("ten");
    let (success, err) = cni(&add_env, &bad);
    assert!(!success);
    assert_eq!(err["code"], 7, "{err}");
    assert!(
        !has_link_in(&cs[2], "eth1"),
        "a failed ADD left an interface"
    );

    // STATUS (1.1.0) while xvsd runs, then without it: ADD says try again later, STATUS
    // says not available, and nothing is left behind.
    let status_env = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", CNI_PATH)];
    assert!(cni(&status_env, &conf("1.1.0")).0);
    assert!(d.terminate());
    let (success, err) = cni(&add_env, &conf("1.0.0"));
    assert!(!success);
    assert_eq!(err["code"], 11, "{err}");
    assert!(err["msg"].as_str().unwrap().contains("not running"));
    assert!(!has_link_in(&cs[2], "eth1"));
    let (success, err) = cni(&status_env, &conf("1.1.0"));
    assert!(!success);
    assert_eq!(err["code"], 50, "{err}");
}

/// One HTTP/1.1 request on the plugin socket, as Docker's plugin client sends it.
/// An IPAM plugin that reads nothing: it answers VERSION, and fails every other command
/// with a CNI error object, a line on stderr and exit status 1.
const FAILING_IPAM: &str = r#"#!/bin/sh
if [ "$CNI_COMMAND" = VERSION ]; then
    echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'
    exit 0
fi
echo "fake-ipam: the range is full" >&2
echo '{"cniVersion":"1.0.0","code":11,"msg":"no IP addresses available","details":"range 10.63.0.0/30"}'
exit 1
"#;

#[test]
fn cni_says_why_its_ipam_plugin_failed() {
    use std::os::unix::fs::PermissionsExt;
    let Some(mut lab) = Lab::new("cni_says_why_its_ipam_plugin_failed") else {
        return;
    };
    let d = lab.xvsd(&[], &[]);
    let bin = lab.path("cni-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let plugin = bin.join("fake-ipam");
    std::fs::write(&plugin, FAILING_IPAM).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let c = lab.bare_container(1, "");
    let netns = format!("/run/netns/{}", c.ns);
    let id = format!("{}-c1", lab.prefix);
    // A configuration bigger than a pipe holds: the plugin, which never reads it, is gone
    // before it is written.
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": format!("{}-net", lab.prefix),
        "type": "xvs-cni",
        "socket": d.socket,
        "ipam": {"type": "fake-ipam", "padding": "x".repeat(1 << 20)},
    });
    let (success, v) = cni(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", &id),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", bin.to_str().unwrap()),
        ],
        &conf,
    );
    assert!(!success, "{v}");
    assert_eq!(v["code"], 11, "{v}");
    let msg = v["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("IPAM plugin fake-ipam: no IP addresses available (exit status: 1)"),
        "{v}"
    );
    let details = v["details"].as_str().unwrap_or_default();
    assert!(details.contains("range 10.63.0.0/30"), "{v}");
    assert!(details.contains("fake-ipam: the range is full"), "{v}");
    assert!(!v.to_string().contains("Broken pipe"), "{v}");
    assert!(ports(&d).is_empty());
}

fn plugin_call(socket: &Path, method: &str, body: &str) -> (u16, Value) {
    let mut stream = UnixStream::connect(socket).expect("connect to the plugin");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "POST /{method} HTTP/1.1\r\nHost: plugin\r\nUser-Agent: Go-http-client/1.1\r\n\
         Accept: application/vnd.docker.plugins.v1.2+json\r\n\
         Content-Type: application/vnd.docker.plugins.v1.2+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, payload) = answer.split_once("\r\n\r\n").expect("an HTTP response");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let value = serde_json::from_str(payload)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {payload:?}"));
    (status, value)
}

fn docker_ok(socket: &Path, method: &str, body: &Value) -> Value {
    let (status, value) = plugin_call(socket, method, &body.to_string());
    assert_eq!(status, 200, "{method}: {value}");
    assert!(
        value.get("Err").is_none_or(|e| e == ""),
        "{method}: {value}"
    );
    value
}

/// What Docker does with a Join answer: moves SrcName into the sandbox, renames it
/// DstPrefix + index, sets the address and MAC, brings it up, adds the default route.
fn docker_plumb(c: &Container, join: &Value, address: &str, index: u32) -> String {
    let src = join["InterfaceName"]["SrcName"].as_str().unwrap();
    let dst = format!(
        "{}{index}",
        join["InterfaceName"]["DstPrefix"].as_str().unwrap()
    );
    common::must(&["ip", "link", "set", src, "netns", &c.ns]);
    ok(&c.exec(&["ip", "link", "set", src, "name", &dst]));
    ok(&c.exec(&["ip", "addr", "add", address, "dev", &dst]));
    ok(&c.exec(&["ip", "link", "set", &dst, "up"]));
    ok(&c.exec(&["ip", "link", "set", "lo", "up"]));
    if let Some(gw) = join["Gateway"].as_str().filter(|g| !g.is_empty()) {
        ok(&c.exec(&["ip", "route", "add", "default", "via", gw]));
    }
    dst
}

#[test]
fn docker_plugin_network_lifecycle() {
    let Some(mut lab) = Lab::new("docker_plugin_network_lifecycle") else {
        return;
    };
    let mut d = lab.xvsd(&[], &[]);
    let socket = lab.path("xvs.sock");
    let state = lab.path("docker-plugin.json");
    let plugin = Command::new(xvs_testkit::bin_path("xvs-docker-plugin"))
        .arg("--socket")
        .arg(&socket)
        .arg("--xvs-socket")
        .arg(&d.socket)
        .arg("--state")
        .arg(&state)
        .args(["--vlans", "300-309"])
        // Gateways on internal ports are tested in a namespace of their own (tests/nat.rs);
        // here the host's namespace is the machine's.
        .arg("--no-gateway")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn xvs-docker-plugin");
    lab.keep(plugin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the plugin did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // `docker network create -d xvs --subnet 10.63.0.0/24 NET`
    let activate = docker_ok(&socket, "Plugin.Activate", &Value::Null);
    assert_eq!(activate, json!({"Implements": ["NetworkDriver"]}));
    let caps = docker_ok(&socket, "NetworkDriver.GetCapabilities", &Value::Null);
    assert_eq!(caps["Scope"], "local");
    let network_id = format!("{:0>64}", format!("{}aa01", lab.prefix));
    let create_network = |id: &str| {
        json!({
            "NetworkID": id,
            "Options": {
                "com.docker.network.enable_ipv6": false,
                "com.docker.network.generic": {},
            },
            "IPv4Data": [{
                "AddressSpace": "LocalDefault",
                "Pool": "10.63.0.0/24",
                "Gateway": "10.63.0.1/24",
                "AuxAddresses": {},
            }],
            "IPv6Data": [],
        })
    };
    docker_ok(
        &socket,
        "NetworkDriver.CreateNetwork",
        &create_network(&network_id),
    );

    // `docker run --network NET` twice.
    let mut cs = Vec::new();
    let mut endpoints = Vec::new();
    for i in 1..=2u8 {
        let c = lab.bare_container(i, &format!("10.63.0.{}", i + 1));
        let endpoint_id = format!("{:0>64}", format!("{}ee0{i}", lab.prefix));
        let created = docker_ok(
            &socket,
            "NetworkDriver.CreateEndpoint",
            &json!({
                "NetworkID": network_id,
                "EndpointID": endpoint_id,
                "Interface": {"Address": format!("{}/24", c.ip), "AddressIPv6": "", "MacAddress": ""},
                "Options": {
                    "com.docker.network.endpoint.exposedports": [],
                    "com.docker.network.portmap": [],
                },
            }),
        );
        let mac = created["Interface"]["MacAddress"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(created["Interface"].get("Address").is_none());
        let info = docker_ok(
            &socket,
            "NetworkDriver.EndpointOperInfo",
            &json!({"NetworkID": network_id, "EndpointID": endpoint_id}),
        );
        let port = info["Value"]["xvs.port"].as_str().unwrap().to_owned();
        lab.track_link(&port);
        assert_eq!(info["Value"]["xvs.vlan"], 300);
        let join = docker_ok(
            &socket,
            "NetworkDriver.Join",
            &json!({
                "NetworkID": network_id,
                "EndpointID": endpoint_id,
                "SandboxKey": format!("/var/run/docker/netns/{}", c.ns),
                "Options": {},
            }),
        );
        lab.track_link(join["InterfaceName"]["SrcName"].as_str().unwrap());
        assert_eq!(join["Gateway"], "10.63.0.1");
        docker_ok(
            &socket,
            "NetworkDriver.ProgramExternalConnectivity",
            &json!({"NetworkID": network_id, "EndpointID": endpoint_id, "Options": {}}),
        );
        let dst = docker_plumb(&c, &join, &format!("{}/24", c.ip), 0);
        assert_eq!(dst, "eth0");
        assert_eq!(c.mac(), mac, "the veth carries the MAC the driver answered");
        cs.push(c);
        endpoints.push((endpoint_id, port));
    }
    let shown = ports(&d);
    assert_eq!(shown.len(), 2);
    for p in &shown {
        assert_eq!(p["vlan"], json!({"mode": "access", "tag": 300}));
        assert_eq!(p["external_ids"]["docker_network"], network_id.as_str());
    }
    let refs: Vec<&Container> = cs.iter().collect();
    ping_all(&refs);

    // xvsd crashes and restarts: it restores the plugin's ports from its saved state, in
    // their VLAN and with their external_ids, with no help from the plugin.
    let xvs_socket = d.socket.clone();
    d.kill9();
    let d = lab.xvsd_at(&xvs_socket, &[], &[]);
    let shown = ports(&d);
    assert_eq!(shown.len(), 2, "restored at start");
    for p in &shown {
        assert_eq!(p["vlan"], json!({"mode": "access", "tag": 300}));
        assert_eq!(p["external_ids"]["docker_network"], network_id.as_str());
    }
    ping_all(&refs);

    // A second network gets another VLAN: same subnet, no traffic across.
    let other_network = format!("{:0>64}", format!("{}aa02", lab.prefix));
    docker_ok(
        &socket,
        "NetworkDriver.CreateNetwork",
        &create_network(&other_network),
    );
    let c3 = lab.bare_container(3, "10.63.0.4");
    let other_endpoint = format!("{:0>64}", format!("{}ee03", lab.prefix));
    docker_ok(
        &socket,
        "NetworkDriver.CreateEndpoint",
        &json!({"NetworkID": other_network, "EndpointID": other_endpoint,
                "Interface": {"Address": "10.63.0.4/24", "AddressIPv6": "", "MacAddress": ""},
                "Options": {}}),
    );
    let join = docker_ok(
        &socket,
        "NetworkDriver.Join",
        &json!({"NetworkID": other_network, "EndpointID": other_endpoint,
                "SandboxKey": "/var/run/docker/netns/x", "Options": {}}),
    );
    lab.track_link(join["InterfaceName"]["SrcName"].as_str().unwrap());
    lab.track_link(&xvs_cli::docker::port_name(&other_endpoint));
    docker_plumb(&c3, &join, "10.63.0.4/24", 0);
    let vlan_of = |endpoint: &str| {
        ports(&d)
            .into_iter()
            .find(|p| p["external_ids"]["docker_endpoint"] == endpoint)
            .map(|p| p["vlan"]["tag"].clone())
    };
    assert_eq!(vlan_of(&other_endpoint), Some(json!(301)));
    assert_eq!(cs[0].ping(&c3.ip, 3, 0.2), 0, "traffic crossed networks");

    // Malformed requests get errors, in the protocol's form.
    let (status, err) = plugin_call(&socket, "NetworkDriver.CreateNetwork", "{\"NetworkID\": ");
    assert_eq!(status, 400);
    assert!(err["Err"].as_str().unwrap().contains("JSON"));
    let (status, err) = plugin_call(&socket, "NetworkDriver.NoSuchThing", "{}");
    assert_eq!(status, 404);
    assert!(err["Err"].is_string());
    let (status, err) = plugin_call(
        &socket,
        "NetworkDriver.CreateEndpoint",
        &json!({"NetworkID": network_id}).to_string(),
    );
    assert_eq!(status, 400);
    assert_eq!(err["Err"], "missing EndpointID");
    let (status, err) = plugin_call(
        &socket,
        "NetworkDriver.Join",
        &json!({"NetworkID": network_id, "EndpointID": "nope", "SandboxKey": "/x"}).to_string(),
    );
    assert_eq!(status, 400);
    assert!(err["Err"].as_str().unwrap().contains("nope"));
    let (status, _) = plugin_call(&socket, "NetworkDriver.DiscoverNew", "[]");
    assert_eq!(status, 400);

    // `docker rm -f`: Leave, then DeleteEndpoint; then `docker network rm`.
    for (c, (endpoint_id, port)) in cs.iter().zip(&endpoints) {
        docker_ok(
            &socket,
            "NetworkDriver.RevokeExternalConnectivity",
            &json!({"NetworkID": network_id, "EndpointID": endpoint_id}),
        );
        docker_ok(
            &socket,
            "NetworkDriver.Leave",
            &json!({"NetworkID": network_id, "EndpointID": endpoint_id}),
        );
        docker_ok(
            &socket,
            "NetworkDriver.DeleteEndpoint",
            &json!({"NetworkID": network_id, "EndpointID": endpoint_id}),
        );
        assert!(!link_exists(port), "{port} is left");
        assert!(!has_link_in(c, "eth0"), "the container end is left");
        // Docker may repeat a DeleteEndpoint; it stays a success.
        docker_ok(
            &socket,
            "NetworkDriver.DeleteEndpoint",
            &json!({"NetworkID": network_id, "EndpointID": endpoint_id}),
        );
    }
    docker_ok(
        &socket,
        "NetworkDriver.DeleteNetwork",
        &json!({"NetworkID": network_id}),
    );
    // Deleting the other network takes its last endpoint along.
    docker_ok(
        &socket,
        "NetworkDriver.DeleteNetwork",
        &json!({"NetworkID": other_network}),
    );
    assert!(ports(&d).is_empty());
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["networks"], json!({}));
    assert_eq!(saved["endpoints"], json!({}));
}

#[test]
fn cni_del_after_an_xvsd_restart_finds_and_removes_its_port() {
    let Some(mut lab) = Lab::new("cni_del_after_an_xvsd_restart") else {
        return;
    };
    if !Path::new(CNI_PATH).join("host-local").exists() {
        xvs_testkit::skip!("no host-local in {CNI_PATH} (containernetworking-plugins)");
    }
    let mut d = lab.xvsd(&[], &[]);
    let xvs_socket = d.socket.clone();
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": format!("{}-net", lab.prefix),
        "type": "xvs-cni",
        "socket": xvs_socket,
        "ipam": {
            "type": "host-local",
            "dataDir": lab.path("ipam"),
            "ranges": [[{"subnet": "10.64.0.0/24"}]],
        },
    });
    let mut cs = Vec::new();
    let mut hosts = Vec::new();
    for i in 1..=2u8 {
        let mut c = lab.bare_container(i, "");
        let netns = format!("/run/netns/{}", c.ns);
        let id = format!("{}-c{i}", lab.prefix);
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", id.as_str()),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_PATH),
        ];
        let (success, result) = cni(&env, &conf);
        assert!(success, "ADD: {result}");
        let host = result["interfaces"][0]["name"].as_str().unwrap().to_owned();
        lab.track_link(&host);
        let address = result["ips"][0]["address"].as_str().unwrap();
        c.ip = address.split('/').next().unwrap().to_owned();
        hosts.push((host, id, netns));
        cs.push(c);
    }
    let refs: Vec<&Container> = cs.iter().collect();
    ping_all(&refs);

    // xvsd crashes and comes back with both CNI ports, attached to the same containers.
    d.kill9();
    let d = lab.xvsd_at(&xvs_socket, &[], &[]);
    assert_eq!(ports(&d).len(), 2, "the CNI ports were restored");
    ping_all(&refs);

    // The runtime's DEL finds its port in the restored daemon and removes it.
    let (host, id, netns) = &hosts[0];
    let env = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", id.as_str()),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", CNI_PATH),
    ];
    let (success, out) = cni(&env, &conf);
    assert!(success, "DEL after a restart: {out}");
    let left: Vec<Value> = ports(&d);
    assert_eq!(left.len(), 1);
    assert_ne!(left[0]["name"], host.as_str());
    assert!(!link_exists(host));
    let config = d.call("show-config", json!({}));
    assert!(
        config["ports"].get(host.as_str()).is_none(),
        "DEL left the port in the saved state: {config}"
    );
}
