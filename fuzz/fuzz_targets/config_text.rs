//! libFuzzer driver for `nameko_cli::fuzzing::config_text`: a YAML config file with environment substitution.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nameko_cli::fuzzing::config_text(data));
