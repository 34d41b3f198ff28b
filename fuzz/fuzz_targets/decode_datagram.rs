//! Any byte string: `decode_datagram` and `decode_received` (decompression
//! first) return `Ok` or a `DecodeError`, never panic, and anything over the
//! datagram limit is `Oversized`; decompression never yields more than a
//! datagram's worth of bytes.
#![no_main]

use anarchy_proto::compress::{decode_received, decompress_datagram};
use anarchy_proto::wire::{decode_datagram, DecodeError};
use anarchy_proto::MAX_DATAGRAM_BYTES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let result = decode_datagram(data);
    if data.len() > MAX_DATAGRAM_BYTES {
        assert_eq!(result, Err(DecodeError::Oversized));
    }
    if let Ok(plain) = decompress_datagram(data) {
        assert!(plain.len() <= MAX_DATAGRAM_BYTES.max(data.len()));
    }
    let received = decode_received(data);
    if data.len() > MAX_DATAGRAM_BYTES {
        assert_eq!(received, Err(DecodeError::Oversized));
    }
});
