//! A CNI network configuration through the plugin's parsers: see
//! `xvs_cli::fuzzing::cni_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xvs_cli::fuzzing::cni_config(data));
