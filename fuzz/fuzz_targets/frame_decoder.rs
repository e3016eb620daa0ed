//! Arbitrary bytes from a client, read by a manager's frame reader and request decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    multiprocessing::fuzzing::frame_decoder(data);
});
