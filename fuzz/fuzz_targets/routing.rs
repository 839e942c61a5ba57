//! libFuzzer driver for `nameko_http::fuzzing::routing`: url rules and the requests routed by them.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nameko_http::fuzzing::routing(data));
