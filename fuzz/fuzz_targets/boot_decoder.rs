//! A child's boot message and argument tuple, as the parent or fork server sends them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    multiproc::fuzzing::decode_boot(data);
});
