//! Containers reach the host and the outside: an internal port gives the host an interface on
//! the switch, masquerade takes the containers out, published ports bring the outside in.
//!
//! The "host" is a namespace of the test running its own xvsd (so its forwarding setting,
//! its nftables and its interfaces are the test's, never the machine's); the "outside" is
//! another namespace joined to the host by a veth, with no route back to the containers'
//! subnet, so that only the host's NAT can answer.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Container, Lab};
use serde_json::{Value, json};
use xvs_proto::client::Client;
use xvs_testkit::{bin_path, netns_command};

/// xvsd in a namespace, killed on drop (declare it after the lab: it goes first).
struct Xvsd {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl Xvsd {
    fn start(lab: &Lab, host: &Container, n: u32) -> Xvsd {
        let socket = lab.path("nat.ctl");
        let log = lab.path(&format!("xvsd-nat-{n}.log"));
        let child = netns_command(&host.ns, bin_path("xvsd"))
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(lab.path("nat-state"))
            .args(["--upcall-dev", "xu0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn xvsd");
        let xvsd = Xvsd {
            child: Some(child),
            socket,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(mut client) = Client::connect(&xvsd.socket)
                && client.call_raw("version", json!({})).is_ok()
            {
                return xvsd;
            }
            assert!(
                Instant::now() < deadline,
                "xvsd did not start: {}",
                xvsd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs xvsctl inside the host namespace (attach makes its veth there).
    fn ctl(&self, host: &Container, args: &[&str]) -> String {
        let out = netns_command(&host.ns, bin_path("xvsctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run xvsctl");
        assert!(
            out.status.success(),
            "xvsctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn call(&self, method: &str, params: Value) -> Value {
        Client::connect(&self.socket)
            .expect("connect")
            .call_raw(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// SIGTERM, and waits for the exit.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(status.success(), "xvsd failed to stop: {}", self.log());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("xvsd did not stop on SIGTERM: {}", self.log());
    }
}

impl Drop for Xvsd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn ok(c: &Container, args: &[&str]) -> Output {
    let out = c.exec(args);
    assert!(
        out.status.success(),
        "{args:?} in {}: {}",
        c.ns,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ruleset(host: &Container) -> String {
    String::from_utf8_lossy(&ok(host, &["nft", "list", "ruleset"]).stdout).into_owned()
}

/// An HTTP server in `c` on `addr:port`, serving `dir` (killed on drop through the lab).
fn serve(lab: &mut Lab, c: &Container, addr: &str, port: u16, dir: &Path) {
    let child = netns_command(&c.ns, "python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", addr])
        .arg("--directory")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start python3 http.server");
    lab.keep(child);
}

/// What `c` reads from `url` (retrying for a few seconds while the server starts), or the
/// last error.
fn fetch(c: &Container, url: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let out = c.exec(&["curl", "-sS", "--max-time", "2", url]);
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        if Instant::now() > deadline {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The host (10.99.0.1, `up0`) and the outside (10.99.0.2), joined by a veth; the outside
/// has no route but its own subnet's.
fn host_and_outside(lab: &mut Lab) -> (Container, Container) {
    let host = lab.bare_container(1, "10.99.0.1");
    let outside = lab.bare_container(2, "10.99.0.2");
    ok(&host, &["ip", "link", "set", "lo", "up"]);
    ok(&outside, &["ip", "link", "set", "lo", "up"]);
    let peer = [
        "ip", "link", "add", "up0", "type", "veth", "peer", "name", "eth0",
    ];
    ok(&host, &[&peer[..], &["netns", &outside.ns]].concat());
    ok(&host, &["ip", "addr", "add", "10.99.0.1/24", "dev", "up0"]);
    ok(&host, &["ip", "link", "set", "up0", "up"]);
    ok(
        &outside,
        &["ip", "addr", "add", "10.99.0.2/24", "dev", "eth0"],
    );
    ok(&outside, &["ip", "link", "set", "eth0", "up"]);
    (host, outside)
}

#[test]
fn containers_reach_the_host_and_the_outside_through_nat() {
    let test = "containers_reach_the_host_and_the_outside_through_nat";
    let Some(mut lab) = Lab::new(test) else {
        return;
    };
    if !lab.require("nft") || !lab.require("curl") || !lab.require("python3") {
        return;
    }
    let (host, outside) = host_and_outside(&mut lab);
    let app = lab.bare_container(3, "10.7.0.2");
    let before = ruleset(&host);

    let www = lab.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("hello"), "from the container\n").unwrap();
    let away = lab.path("away");
    std::fs::create_dir_all(&away).unwrap();
    std::fs::write(away.join("hello"), "from the outside\n").unwrap();

    let mut xvsd = Xvsd::start(&lab, &host, 1);
    xvsd.ctl(
        &host,
        &[
            "add-port",
            "xin0",
            "--type",
            "internal",
            "--ip",
            "10.7.0.1/24",
            "--masquerade",
        ],
    );
    xvsd.ctl(
        &host,
        &[
            "attach",
            &app.ns,
            "--ip",
            "10.7.0.2/24",
            "--gw",
            "10.7.0.1",
            "--publish",
            "8080:80",
        ],
    );
    let config = xvsd.call("show-config", json!({}));
    assert_eq!(
        config["ports"]["xin0"]["internal"],
        json!({"addrs": ["10.7.0.1/24"], "masquerade": true})
    );
    // The switch side is the port; asked for by the internal port's name, it answers.
    let counters = xvsd.call("dump-ports", json!({"name": "xin0"}));
    assert_eq!(counters["ports"][0]["name"], "xin0-sw", "{counters}");
    serve(&mut lab, &app, "10.7.0.2", 80, &www);
    serve(&mut lab, &outside, "10.99.0.2", 80, &away);

    // Container → host, host → container.
    assert!(
        app.wait_ping("10.7.0.1", Duration::from_secs(5)),
        "container → host: no answer\n{}",
        xvsd.log()
    );
    assert_eq!(
        fetch(&host, "http://10.7.0.2/hello").as_deref(),
        Ok("from the container\n"),
        "host → container TCP"
    );
    // Container → outside, masqueraded: the outside has no route back to 10.7.0.0/24.
    assert!(
        app.wait_ping("10.99.0.2", Duration::from_secs(5)),
        "container → outside ping"
    );
    assert_eq!(
        fetch(&app, "http://10.99.0.2/hello").as_deref(),
        Ok("from the outside\n"),
        "container → outside TCP"
    );
    // Outside → published port → container; and from the host to its own address.
    assert_eq!(
        fetch(&outside, "http://10.99.0.1:8080/hello").as_deref(),
        Ok("from the container\n"),
        "outside → published port"
    );
    assert_eq!(
        fetch(&host, "http://10.99.0.1:8080/hello").as_deref(),
        Ok("from the container\n"),
        "host → published port"
    );

    // A clean stop takes the interface and the table away; a start brings both back.
    xvsd.stop();
    assert_eq!(ruleset(&host), before, "the NAT table outlived xvsd");
    assert!(
        !host.exec(&["ip", "link", "show", "xin0"]).status.success(),
        "xin0 outlived xvsd"
    );
    let xvsd = Xvsd::start(&lab, &host, 2);
    assert!(
        app.wait_ping("10.99.0.2", Duration::from_secs(10)),
        "container → outside after a restart\n{}",
        xvsd.log()
    );
    assert_eq!(
        fetch(&outside, "http://10.99.0.1:8080/hello").as_deref(),
        Ok("from the container\n"),
        "published port after a restart"
    );

    // Masquerade off, detach, delete: the host's nftables are as they were.
    xvsd.ctl(&host, &["set-port", "xin0", "masquerade", "off"]);
    assert!(!ruleset(&host).contains("masquerade"));
    xvsd.ctl(&host, &["detach", &app.ns]);
    xvsd.ctl(&host, &["del-port", "xin0"]);
    assert_eq!(ruleset(&host), before, "removal left rules behind");
    assert!(
        !host.exec(&["ip", "link", "show", "xin0"]).status.success(),
        "xin0 outlived its port"
    );
}

#[test]
fn internal_port_names_must_leave_room_for_the_switch_side() {
    let test = "internal_port_names_must_leave_room_for_the_switch_side";
    let Some(mut lab) = Lab::new(test) else {
        return;
    };
    let host = lab.bare_container(1, "");
    let xvsd = Xvsd::start(&lab, &host, 1);
    let out = netns_command(&host.ns, bin_path("xvsctl"))
        .arg("--socket")
        .arg(&xvsd.socket)
        .args(["add-port", "thirteen-char", "--type", "internal"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must be 1-12 characters"), "{err}");
    // set-port masquerade is for internal ports only.
    ok(
        &host,
        &[
            "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ],
    );
    xvsd.ctl(&host, &["add-port", "v0"]);
    let out = netns_command(&host.ns, bin_path("xvsctl"))
        .arg("--socket")
        .arg(&xvsd.socket)
        .args(["set-port", "v0", "masquerade", "on"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an internal port"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CNI_PATH: &str = "/usr/lib/cni";

/// Runs CNI plugin `plugin` inside the host namespace as a runtime does (the CNI variables
/// and nothing else); returns whether it succeeded and what it printed.
fn cni(host: &Container, plugin: &Path, env: &[(&str, &str)], stdin: &Value) -> (bool, Value) {
    use std::io::Write;
    let mut child = netns_command(&host.ns, plugin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run a CNI plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !out.status.success() {
        eprintln!(
            "{} failed: {text} {}",
            plugin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (out.status.success(), value)
}

/// The CNI variables of command `command` for the container in `netns`.
fn cni_env<'a>(command: &'a str, netns: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "natc1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", CNI_PATH),
    ]
}

#[test]
fn the_cni_plugin_makes_the_host_the_gateway_and_masquerades() {
    let test = "the_cni_plugin_makes_the_host_the_gateway_and_masquerades";
    let Some(mut lab) = Lab::new(test) else {
        return;
    };
    if !lab.require("nft") || !lab.require("curl") || !lab.require("python3") {
        return;
    }
    if !Path::new(CNI_PATH).join("host-local").exists() {
        xvs_testkit::skip!("no host-local in {CNI_PATH} (containernetworking-plugins)");
    }
    let (host, outside) = host_and_outside(&mut lab);
    let app = lab.bare_container(3, "");
    let away = lab.path("away");
    std::fs::create_dir_all(&away).unwrap();
    std::fs::write(away.join("hello"), "from the outside\n").unwrap();
    serve(&mut lab, &outside, "10.99.0.2", 80, &away);
    let xvsd = Xvsd::start(&lab, &host, 1);
    let netns = format!("/run/netns/{}", app.ns);
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "natnet",
        "type": "xvs-cni",
        "socket": xvsd.socket,
        "isDefaultGateway": true,
        "ipMasq": true,
        "ipam": {
            "type": "host-local",
            "dataDir": lab.path("ipam"),
            "ranges": [[{"subnet": "10.8.0.0/24", "gateway": "10.8.0.1"}]],
        },
    });
    let (success, result) = cni(&host, &bin_path("xvs-cni"), &cni_env("ADD", &netns), &conf);
    assert!(success, "ADD: {result}\n{}", xvsd.log());
    let config = xvsd.call("show-config", json!({}));
    let (gateway, port) = config["ports"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, p)| p.get("internal").is_some())
        .unwrap_or_else(|| panic!("no internal port: {config}"));
    assert_eq!(
        port["internal"],
        json!({"addrs": ["10.8.0.1/24"], "masquerade": true})
    );
    assert!(
        app.wait_ping("10.8.0.1", Duration::from_secs(5)),
        "container → gateway"
    );
    assert!(
        app.wait_ping("10.99.0.2", Duration::from_secs(5)),
        "container → outside through ipMasq"
    );
    assert_eq!(
        fetch(&app, "http://10.99.0.2/hello").as_deref(),
        Ok("from the outside\n")
    );

    // Chained with the standard portmap plugin (iptables): the outside reaches the container.
    let portmap = Path::new(CNI_PATH).join("portmap");
    if portmap.exists() && lab.require("iptables") {
        let www = lab.path("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("hello"), "from the container\n").unwrap();
        let address = result["ips"][0]["address"].as_str().unwrap().to_owned();
        let ip = address.split('/').next().unwrap().to_owned();
        serve(&mut lab, &app, &ip, 80, &www);
        let chained = json!({
            "cniVersion": "1.0.0",
            "name": "natnet",
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {
                "portMappings": [{"hostPort": 8082, "containerPort": 80, "protocol": "tcp"}]
            },
            "prevResult": result,
        });
        let (success, out) = cni(&host, &portmap, &cni_env("ADD", &netns), &chained);
        assert!(success, "portmap ADD: {out}");
        // Then the firewall plugin, as podman's default conflist has it.
        let firewall = Path::new(CNI_PATH).join("firewall");
        let walled = json!({
            "cniVersion": "1.0.0",
            "name": "natnet",
            "type": "firewall",
            "backend": "iptables",
            "prevResult": if out.is_object() { out.clone() } else { result.clone() },
        });
        let firewalled = firewall.exists();
        if firewalled {
            let (success, out) = cni(&host, &firewall, &cni_env("ADD", &netns), &walled);
            assert!(success, "firewall ADD: {out}");
        }
        assert_eq!(
            fetch(&outside, "http://10.99.0.1:8082/hello").as_deref(),
            Ok("from the container\n"),
            "outside → portmap → container"
        );
        if firewalled {
            let (success, out) = cni(&host, &firewall, &cni_env("DEL", &netns), &walled);
            assert!(success, "firewall DEL: {out}");
        }
        let (success, out) = cni(&host, &portmap, &cni_env("DEL", &netns), &chained);
        assert!(success, "portmap DEL: {out}");
    }

    let (success, out) = cni(&host, &bin_path("xvs-cni"), &cni_env("DEL", &netns), &conf);
    assert!(success, "DEL: {out}");
    // The gateway port stays, as the bridge plugin's bridge does, until removed by hand;
    // then xvs's table is gone.
    xvsd.ctl(&host, &["del-port", gateway]);
    let after = ruleset(&host);
    assert!(!after.contains("table ip xvs"), "{after}");
}

/// One request to the Docker plugin on `socket`, as dockerd makes it; the answer's body.
fn docker(socket: &Path, method: &str, body: &Value) -> Value {
    use std::io::{Read, Write};
    let body = body.to_string();
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "POST /{method} HTTP/1.1\r\nHost: plugin\r\n\
         Content-Type: application/vnd.docker.plugins.v1.2+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, payload) = answer.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.contains(" 200 "), "{method}: {answer}");
    serde_json::from_str(payload).unwrap_or_else(|e| panic!("{method} ({e}): {payload}"))
}

#[test]
fn a_docker_network_has_its_gateway_on_an_internal_port() {
    let test = "a_docker_network_has_its_gateway_on_an_internal_port";
    let Some(mut lab) = Lab::new(test) else {
        return;
    };
    if !lab.require("nft") {
        return;
    }
    let (host, outside) = host_and_outside(&mut lab);
    let app = lab.bare_container(3, "10.9.0.2");
    let before = ruleset(&host);
    let xvsd = Xvsd::start(&lab, &host, 1);
    let socket = lab.path("docker.sock");
    let plugin = netns_command(&host.ns, bin_path("xvs-docker-plugin"))
        .arg("--socket")
        .arg(&socket)
        .arg("--xvs-socket")
        .arg(&xvsd.socket)
        .arg("--state")
        .arg(lab.path("docker-plugin.json"))
        .args(["--vlans", "300-309"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn xvs-docker-plugin");
    lab.keep(plugin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the plugin did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let network = |id: &str, gateway: &str, generic: Value| {
        json!({
            "NetworkID": id,
            "Options": {"com.docker.network.generic": generic},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Gateway": gateway}],
            "IPv6Data": [],
        })
    };
    let net1 = format!("{:0>64}", "a1");
    let net2 = format!("{:0>64}", "a2");
    docker(
        &socket,
        "NetworkDriver.CreateNetwork",
        &network(&net1, "10.9.0.1/24", json!({})),
    );
    docker(
        &socket,
        "NetworkDriver.CreateNetwork",
        &network(
            &net2,
            "10.10.0.1/24",
            json!({"com.docker.network.bridge.enable_ip_masquerade": "false"}),
        ),
    );
    let config = xvsd.call("show-config", json!({}));
    let gw1 = xvs_cli::docker::gateway_port(&net1);
    let gw2 = xvs_cli::docker::gateway_port(&net2);
    assert_eq!(
        config["ports"][&gw1]["internal"],
        json!({"addrs": ["10.9.0.1/24"], "masquerade": true}),
        "{config}"
    );
    assert_eq!(
        config["ports"][&gw1]["vlan"],
        json!({"mode": "access", "tag": 300})
    );
    assert_eq!(
        config["ports"][&gw2]["internal"],
        json!({"addrs": ["10.10.0.1/24"], "masquerade": false})
    );

    // `docker run --network net1`: the container goes out through its gateway, masqueraded.
    let endpoint = format!("{:0>64}", "e1");
    docker(
        &socket,
        "NetworkDriver.CreateEndpoint",
        &json!({"NetworkID": net1, "EndpointID": endpoint,
                "Interface": {"Address": "10.9.0.2/24", "MacAddress": ""}, "Options": {}}),
    );
    let join = docker(
        &socket,
        "NetworkDriver.Join",
        &json!({"NetworkID": net1, "EndpointID": endpoint,
                "SandboxKey": "/var/run/docker/netns/x", "Options": {}}),
    );
    assert_eq!(join["Gateway"], "10.9.0.1");
    let src = join["InterfaceName"]["SrcName"].as_str().unwrap();
    ok(&host, &["ip", "link", "set", src, "netns", &app.ns]);
    ok(&app, &["ip", "link", "set", src, "name", "eth0"]);
    ok(&app, &["ip", "addr", "add", "10.9.0.2/24", "dev", "eth0"]);
    ok(&app, &["ip", "link", "set", "eth0", "up"]);
    ok(&app, &["ip", "route", "add", "default", "via", "10.9.0.1"]);
    assert!(
        app.wait_ping("10.9.0.1", Duration::from_secs(5)),
        "container → its gateway\n{}",
        xvsd.log()
    );
    assert!(
        app.wait_ping("10.99.0.2", Duration::from_secs(5)),
        "container → outside, masqueraded"
    );
    let _ = &outside;

    docker(
        &socket,
        "NetworkDriver.Leave",
        &json!({"NetworkID": net1, "EndpointID": endpoint}),
    );
    docker(
        &socket,
        "NetworkDriver.DeleteEndpoint",
        &json!({"NetworkID": net1, "EndpointID": endpoint}),
    );
    for id in [&net1, &net2] {
        docker(
            &socket,
            "NetworkDriver.DeleteNetwork",
            &json!({"NetworkID": id}),
        );
    }
    let config = xvsd.call("show-config", json!({}));
    assert_eq!(config["ports"], json!({}), "{config}");
    assert_eq!(ruleset(&host), before);
    for gw in [&gw1, &gw2] {
        assert!(!host.exec(&["ip", "link", "show", gw]).status.success());
    }
}
