//! libFuzzer driver for `nameko_events::fuzzing::event_message`: an event delivery's content type, headers and body.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nameko_events::fuzzing::event_message(data));
