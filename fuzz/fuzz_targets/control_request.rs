#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sessiondb_fuzz::control_request(data));
