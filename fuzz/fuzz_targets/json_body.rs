//! libFuzzer driver for `nameko_amqp::fuzzing::json_body`: a kombu JSON message body.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nameko_amqp::fuzzing::json_body(data));
