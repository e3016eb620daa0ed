//! Arbitrary requests and arguments, dispatched to a manager's built-in objects.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    multiproc::fuzzing::manager_request(data);
});
