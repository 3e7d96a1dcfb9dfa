//! The switch without ports: what it checks and answers needs no root (the UMEM is anonymous
//! memory, workers are threads).

use super::*;

fn options() -> SwitchOptions {
    SwitchOptions {
        umem_frames: 1024,
        fast_path: false,
        // No upcall device: these tests make no kernel object but memory and threads.
        hook: HookChoice::Only(HookKind::Xdp),
        ..SwitchOptions::default()
    }
}

#[test]
fn bad_options_are_refused_with_the_reason() {
    let cases = [
        (
            SwitchOptions {
                workers: vec![],
                ..options()
            },
            "between 1 and 64 workers",
        ),
        (
            SwitchOptions {
                frame_size: 3000,
                ..options()
            },
            "frame size",
        ),
        (
            SwitchOptions {
                ring_size: 100,
                ..options()
            },
            "ring size",
        ),
    ];
    for (options, reason) in cases {
        match Switch::start(options, Config::default()) {
            Err(SwitchError::Invalid(message)) => assert!(message.contains(reason), "{message}"),
            other => panic!("expected {reason:?}, got {other:?}"),
        }
    }
}

#[test]
fn a_switch_without_ports_answers_and_stops() {
    let mut switch = Switch::start(
        SwitchOptions {
            workers: vec![None, None],
            ..options()
        },
        Config::default(),
    )
    .expect("start");
    assert_eq!(switch.worker_count(), 2);
    assert!(!switch.fast_path());
    assert!(matches!(
        switch.add_port("xvs-no-such-if", &PortOptions::default()),
        Err(SwitchError::NoSuchInterface(_))
    ));
    assert!(matches!(
        switch.del_port("xvs-no-such-if"),
        Err(SwitchError::NoSuchPort(_))
    ));
    switch.publish(Config::default()).expect("publish");
    assert!(switch.fdb().expect("fdb").is_empty());
    assert!(switch.ports().is_empty());
    assert_eq!(switch.workers().len(), 2);
    switch.stop();
    assert_eq!(
        switch.pooled_frames(),
        1024,
        "workers gave every frame back"
    );
}

#[test]
fn default_umem_fits_the_memlock_limit_or_takes_all() {
    let frames = default_umem_frames(2048);
    assert!((1024..=16384).contains(&frames));
}
