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
    assert_eq!(switch.macs_not_learned().expect("MAC counters"), 0);
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
fn the_default_umem_fits_the_memlock_limit() {
    use options::umem_frames_for;
    assert_eq!(
        umem_frames_for(2048, true, Some(0)),
        16384,
        "CAP_IPC_LOCK: no limit"
    );
    // 8 MiB, of which three quarters for the UMEM: 3072 frames of 2 KiB.
    assert_eq!(umem_frames_for(2048, false, Some(8 << 20)), 3072);
    assert_eq!(umem_frames_for(4096, false, Some(8 << 20)), 1536);
    assert_eq!(
        umem_frames_for(2048, false, Some(u64::MAX)),
        16384,
        "unlimited"
    );
    assert_eq!(
        umem_frames_for(2048, false, Some(64 << 10)),
        1024,
        "never below 1024"
    );
    assert_eq!(umem_frames_for(2048, false, None), 1024, "unknown limit");
}
