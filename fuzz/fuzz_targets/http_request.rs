//! libFuzzer driver for `nameko_http::fuzzing::http_request`: raw bytes sent to a running web server over TCP.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nameko_http::fuzzing::http_request(data));
