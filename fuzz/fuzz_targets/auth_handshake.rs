//! Arbitrary bytes from the peer of an authentication handshake, on either side of it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(!multiproc::fuzzing::auth_handshake(data), "a handshake passed without the key");
});
