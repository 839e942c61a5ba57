//! libFuzzer driver for `nameko_rpc::fuzzing::rpc_request`: an RPC request body, decoded and
//! bound to handler parameters of every shape.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nameko_rpc::fuzzing::rpc_request(data));
