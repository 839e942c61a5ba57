//! libFuzzer driver for `nameko_amqp::fuzzing::amqp_uri`: a broker URI, checking that its password is never shown.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nameko_amqp::fuzzing::amqp_uri(data));
