//! Handles (connections, queues, locks, values, arrays) decoded with whatever descriptors a
//! peer sent: memory files with arbitrary contents, sockets, pipes, `/dev/null`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    multiproc::fuzzing::decode_handles(data);
});
