//! The guards remove what they made, on a normal drop and when a test panics.

use std::path::Path;

use xvs_testkit::{Netns, VethPair, can_run, unique_name};

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn host_link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

#[test]
fn a_veth_into_a_namespace_is_gone_after_drop() {
    if !can_run("a_veth_into_a_namespace_is_gone_after_drop", &["ip"]) {
        return;
    }
    let base = unique_name("xk");
    let host = format!("{base}h");
    {
        let ns = Netns::new(format!("{base}n")).expect("netns");
        let veth = VethPair::build(&host, "eth0")
            .peer_netns(&ns)
            .queues(2)
            .create()
            .expect("veth");
        veth.set_up().expect("up");
        assert!(netns_exists(ns.name()));
        assert!(host_link_exists(&host));
        let inside = ns.exec(&["ip", "-br", "link", "show", "dev", "eth0"]);
        assert!(inside.status.success());
    }
    assert!(!netns_exists(&format!("{base}n")));
    assert!(!host_link_exists(&host));
}

#[test]
fn guards_clean_up_when_the_test_panics() {
    if !can_run("guards_clean_up_when_the_test_panics", &["ip"]) {
        return;
    }
    let base = unique_name("xk");
    let (ns_name, host) = (format!("{base}n"), format!("{base}h"));
    let result = std::panic::catch_unwind(|| {
        let ns = Netns::new(ns_name.clone()).expect("netns");
        let _veth = VethPair::build(&host, "eth0")
            .peer_netns(&ns)
            .create()
            .expect("veth");
        panic!("a test fails with the lab built");
    });
    assert!(result.is_err());
    assert!(!netns_exists(&ns_name));
    assert!(!host_link_exists(&host));
}

#[test]
fn names_too_long_for_the_kernel_are_refused_before_anything_is_made() {
    let err = VethPair::build("a-name-of-16-bts", "eth0")
        .create()
        .expect_err("too long");
    assert!(matches!(err, xvs_testkit::Error::NameTooLong(_)), "{err}");
}

#[test]
fn the_test_name_is_the_threads() {
    assert_eq!(xvs_testkit::test_name(), "the_test_name_is_the_threads");
}
