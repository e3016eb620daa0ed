//! Frames as a peer may write them: any bytes, any announced length, truncation anywhere; read
//! by a connection's frame reader and by a manager's request reader.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small cap makes the oversized-frame path (skip and report) reachable too.
    multiproc::fuzzing::read_frames(data, 1024);
    multiproc::fuzzing::frame_decoder(data);
});
