//! A request line through the envelope and the method table: see
//! `xvs_proto::fuzzing::jsonrpc_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xvs_proto::fuzzing::jsonrpc_request(data));
