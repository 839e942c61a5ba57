//! libFuzzer driver for `nameko_core::fuzzing::redaction`: sensitive_arguments paths applied to arguments.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nameko_core::fuzzing::redaction(data));
