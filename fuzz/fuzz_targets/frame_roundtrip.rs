//! Whatever decodes re-encodes canonically: decode, re-encode, decode again
//! gives the same datagram, and the re-encoding is never longer than the input
//! (varints are re-encoded in their shortest form).
#![no_main]

use anarchy_proto::wire::{decode_datagram, encode_frames};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(first) = decode_datagram(data) else { return };
    let bytes = encode_frames(&first.sender, &first.frames);
    assert!(bytes.len() <= data.len(), "re-encoding grew from {} to {} bytes", data.len(), bytes.len());
    let second = decode_datagram(&bytes).expect("a re-encoded datagram decodes");
    assert_eq!(first, second);
    // Frame by frame too: each frame alone round-trips.
    for f in &first.frames {
        let one = encode_frames(&first.sender, std::slice::from_ref(f));
        let d = decode_datagram(&one).expect("a single re-encoded frame decodes");
        assert_eq!(d.frames.as_slice(), std::slice::from_ref(f));
    }
});
