//! Any byte string: `decode_datagram` returns `Ok` or a `DecodeError`, never panics,
//! and anything over the datagram limit is `Oversized`.
#![no_main]

use anarchy_proto::wire::{decode_datagram, DecodeError};
use anarchy_proto::MAX_DATAGRAM_BYTES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let result = decode_datagram(data);
    if data.len() > MAX_DATAGRAM_BYTES {
        assert_eq!(result, Err(DecodeError::Oversized));
    }
});
