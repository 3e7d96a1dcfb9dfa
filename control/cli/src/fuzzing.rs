//! What the CNI fuzz targets check, as plain functions: cargo-fuzz calls them on generated
//! input (`control/cli/fuzz`), and `tests/fuzz_corpus.rs` replays the checked-in corpora
//! through them on stable.

use serde_json::Value;

use crate::cni::env::CniArgs;
use crate::cni::types::{CniResult, NetConf, SUPPORTED_VERSIONS, at_least, check_version, code};
use crate::cni::{Outcome, run};

/// A network configuration as a runtime passes it on standard input: [`NetConf::parse`]
/// never panics and refuses with the spec's codes; what it accepts is within the ranges it
/// promises, its `prevResult` reads as a [`cni_result`] input does. The bytes also go
/// through `VERSION` (which reads only the version) and, as text, through the `CNI_ARGS`
/// parser.
///
/// # Panics
/// When one of those does not hold.
pub fn cni_config(data: &[u8]) {
    match NetConf::parse(data) {
        Ok(conf) => {
            assert!(!conf.name.is_empty());
            assert!(
                conf.vlan.is_none_or(|v| (1..=4094).contains(&v)),
                "{conf:?}"
            );
            assert!(
                conf.mtu.is_none_or(|m| (1..=65535).contains(&m)),
                "{conf:?}"
            );
            assert!(conf.raw.is_object());
            if let Err(e) = check_version(&conf.cni_version) {
                assert!([code::DECODE, code::INCOMPATIBLE_VERSION].contains(&e.code));
            }
            if let Some(prev) = &conf.prev_result {
                check_result(prev);
            }
        }
        Err(e) => {
            assert!(
                [code::DECODE, code::INVALID_CONFIG].contains(&e.code),
                "{e:?}"
            );
            let printed = e.to_json("1.1.0");
            assert_eq!(printed["code"], e.code);
        }
    }
    let version = |name: &str| (name == "CNI_COMMAND").then(|| "VERSION".to_owned());
    match run(&version, data) {
        Ok(Outcome::Print(answer)) => {
            assert!(answer["cniVersion"].is_string(), "{answer}");
            assert_eq!(
                answer["supportedVersions"],
                serde_json::json!(SUPPORTED_VERSIONS)
            );
        }
        other => panic!("VERSION answered {other:?}"),
    }
    if let Ok(text) = core::str::from_utf8(data)
        && let Ok(args) = CniArgs::parse(text)
    {
        assert_eq!(
            args.mac.as_ref(),
            args.pairs.get("MAC").filter(|m| !m.is_empty())
        );
    }
}

/// A result as an IPAM plugin prints it (or a runtime passes it as `prevResult`):
/// [`CniResult::parse`] never panics and refuses with [`code::DECODE`]; a result read prints
/// in every supported version, and reads back from that, as JSON text too: unchanged from
/// 1.1.0, without the interface MTUs and the 1.1.0 attributes from older versions.
///
/// # Panics
/// When one of those does not hold.
pub fn cni_result(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        check_result(&value);
    }
}

fn check_result(value: &Value) {
    let result = match CniResult::parse(value) {
        Ok(result) => result,
        Err(e) => {
            assert_eq!(e.code, code::DECODE, "{e:?}");
            return;
        }
    };
    for version in SUPPORTED_VERSIONS {
        let mut expected = result.clone();
        if !at_least(version, "1.1.0") {
            for interface in &mut expected.interfaces {
                interface.mtu = None;
                interface.extra.clear();
            }
            for route in &mut expected.routes {
                route.extra.clear();
            }
        }
        let printed = result.to_json(version);
        assert_eq!(printed["cniVersion"], version);
        let back = CniResult::parse(&printed)
            .unwrap_or_else(|e| panic!("{printed} does not read back: {e}"));
        assert_eq!(back, expected, "{version}: {printed}");
        let text = printed.to_string();
        let reread: Value = serde_json::from_str(&text).expect("printed JSON parses");
        let back =
            CniResult::parse(&reread).unwrap_or_else(|e| panic!("{text} does not read back: {e}"));
        assert_eq!(back, expected, "{version}: {text}");
    }
}
