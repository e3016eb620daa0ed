//! A child's result message, as `JoinHandle::join` reads it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    multiproc::fuzzing::decode_outcome(data);
});
