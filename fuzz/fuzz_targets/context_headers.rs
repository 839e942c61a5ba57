//! libFuzzer driver for `nameko_amqp::fuzzing::context_headers`: AMQP message headers (a field table) as context data.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nameko_amqp::fuzzing::context_headers(data));
