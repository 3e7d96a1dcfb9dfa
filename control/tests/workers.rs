//! Several workers: every queue of a multi-queue port is served, each by one of the workers
//! (with the tc hook: every queue of the upcall device).

mod common;

use std::time::Duration;

use common::Lab;
use serde_json::json;

#[test]
fn every_queue_of_a_multiqueue_veth_is_served() {
    let Some(mut lab) = Lab::new("every_queue_of_a_multiqueue_veth_is_served") else {
        return;
    };
    if !lab.require("iperf3") {
        return;
    }
    let a = lab.container_with_queues(1, 30, 2);
    let b = lab.container_with_queues(2, 30, 2);
    let mut gbps = Vec::new();
    for cpus in ["1", "0,1"] {
        // The userspace path, so that the workers do the forwarding.
        let mut d = lab.xvsd(&[&a.port, &b.port], &["--cpus", cpus, "--fast-path", "off"]);
        let show = d.call("show", json!({}));
        let workers = cpus.split(',').count();
        for port in show["ports"].as_array().unwrap() {
            let queues = port["queues"].as_array().unwrap();
            if port["hook"] == "tc" {
                // A tc port's frames reach the workers through the upcall device, one queue
                // per worker; its own socket only sends.
                assert_eq!(queues.len(), 1, "one sending socket: {port}");
                continue;
            }
            assert_eq!(queues.len(), 2, "both queues bound: {port}");
            let served_by: Vec<u64> = queues
                .iter()
                .map(|q| q["worker"].as_u64().unwrap())
                .collect();
            assert_eq!(
                served_by,
                if workers == 2 { vec![0, 1] } else { vec![0, 0] }
            );
        }
        assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
        let v = common::iperf_json(&mut lab, &a, &b, 4, 8);
        let rate = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e9;
        println!(
            "{workers} worker(s), 8 TCP flows over 2 queues, userspace path: {rate:.2} Gbit/s"
        );
        gbps.push(rate);
        assert!(rate > 0.01);
        if workers == 2 {
            let ports = d.call("dump-ports", json!({}));
            for w in ports["workers"].as_array().unwrap() {
                let rx: u64 = w["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["rx_packets"].as_u64().unwrap())
                    .sum();
                assert!(rx > 1000, "worker {} served nothing: {ports}", w["id"]);
            }
        }
        assert!(d.terminate());
    }
}
