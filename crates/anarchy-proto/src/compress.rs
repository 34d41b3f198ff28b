//! Compression of a datagram's frames region: LZ4 (block format, no size
//! prefix) when it makes the datagram smaller, flagged by bit 0 of the
//! header's flags byte. Pure functions between frame encoding and the wire:
//! anything that seals a datagram wraps the (possibly compressed) frames
//! region afterwards and unwraps it before [`decompress_datagram`].
//!
//! It never expands a datagram, and decompression never produces (or
//! allocates) more than [`MAX_DECOMPRESSED_BYTES`]: anything past that is a
//! bomb and is rejected as [`DecodeError::BadCompression`].

use std::borrow::Cow;
use std::cell::RefCell;

use lz4_flex::block::{compress_into_with_table, get_maximum_output_size, CompressTable};

use crate::wire::{
    decode_datagram, Datagram, DecodeError, HEADER_BYTES, MAGIC, MAX_DATAGRAM_BYTES, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};

/// Header flag: the frames region is an LZ4 block.
pub const FLAG_COMPRESSED: u8 = 0x01;
/// Frames regions shorter than this travel as they are: LZ4 cannot make them
/// smaller often enough to be worth the work.
pub const MIN_COMPRESS_BYTES: usize = 64;
/// Largest frames region a compressed datagram may expand to: exactly what an
/// uncompressed datagram may carry, since frames are packed by their
/// uncompressed size.
pub const MAX_DECOMPRESSED_BYTES: usize = MAX_FRAME_BYTES;

/// Offset of the flags byte in the header.
const FLAGS_AT: usize = 3;

/// Compresses the frames region of an encoded datagram (header included) when
/// that makes it smaller; otherwise returns it unchanged.
pub fn compress_datagram(datagram: Vec<u8>) -> Vec<u8> {
    if datagram.len() < HEADER_BYTES + MIN_COMPRESS_BYTES || datagram[FLAGS_AT] != 0 {
        return datagram;
    }
    thread_local! {
        // The compressor's hash table, kept between datagrams: cleared before
        // each use, so the output is what `lz4_flex::block::compress` gives,
        // without allocating a fresh 8 KiB table (and its output buffer) each time.
        static TABLE: RefCell<CompressTable> = RefCell::new(CompressTable::small());
    }
    let frames = &datagram[HEADER_BYTES..];
    let mut out = vec![0u8; HEADER_BYTES + get_maximum_output_size(frames.len())];
    let packed = TABLE
        .with(|table| compress_into_with_table(frames, &mut out[HEADER_BYTES..], &mut table.borrow_mut()))
        .expect("the output has room for the worst case");
    if packed >= frames.len() {
        return datagram;
    }
    out.truncate(HEADER_BYTES + packed);
    out[..HEADER_BYTES].copy_from_slice(&datagram[..HEADER_BYTES]);
    out[FLAGS_AT] |= FLAG_COMPRESSED;
    debug_assert!(out.len() < datagram.len());
    out
}

/// Undoes [`compress_datagram`]: a datagram whose header is ours and flags it
/// compressed comes back with its frames region expanded and the flag cleared;
/// anything else comes back as it is, for `decode_datagram` to judge.
pub fn decompress_datagram(bytes: &[u8]) -> Result<Cow<'_, [u8]>, DecodeError> {
    if bytes.len() < HEADER_BYTES
        || bytes[..2] != MAGIC
        || bytes[2] != PROTOCOL_VERSION
        || bytes[FLAGS_AT] & FLAG_COMPRESSED == 0
    {
        return Ok(Cow::Borrowed(bytes));
    }
    if bytes.len() > MAX_DATAGRAM_BYTES {
        return Err(DecodeError::Oversized);
    }
    let mut frames = [0u8; MAX_DECOMPRESSED_BYTES];
    let n = lz4_flex::block::decompress_into(&bytes[HEADER_BYTES..], &mut frames)
        .map_err(|_| DecodeError::BadCompression)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + n);
    out.extend_from_slice(&bytes[..HEADER_BYTES]);
    out[FLAGS_AT] &= !FLAG_COMPRESSED;
    out.extend_from_slice(&frames[..n]);
    Ok(Cow::Owned(out))
}

/// Decodes a datagram as it arrived: [`decompress_datagram`], then
/// [`decode_datagram`]. What the peer does with every datagram it receives.
pub fn decode_received(bytes: &[u8]) -> Result<Datagram, DecodeError> {
    decode_datagram(&decompress_datagram(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::PeerId;
    use crate::wire::{encode_frames, Frame, Op, Update};
    use crate::ShardId;

    /// Bytes with no repeats for LZ4 to find (xorshift).
    fn noise<const N: usize>(seed: u64) -> [u8; N] {
        let mut x = seed | 1;
        std::array::from_fn(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
    }

    fn delta(n: usize) -> Vec<u8> {
        let updates = (0..n)
            .map(|i| Update { key: format!("entity-{i}").into_bytes(), op: Op::Put(vec![i as u8; 16]) })
            .collect();
        encode_frames(
            &PeerId(noise(0x9e37_79b9)),
            &[Frame::Delta {
                shard: ShardId(9),
                epoch: 3,
                first_seq: 10,
                base: 5,
                after: 6,
                author: PeerId(noise(0x7f4a_7c15)),
                sig: noise(0x2545_f491),
                updates,
            }],
        )
    }

    #[test]
    fn the_kept_table_compresses_as_a_fresh_one_does() {
        // Different sizes one after another, so a reused table that kept
        // anything of the last datagram would show.
        for n in [40, 3, 17, 40, 1, 25] {
            let plain = delta(n);
            let packed = compress_datagram(plain.clone());
            let fresh = lz4_flex::block::compress(&plain[HEADER_BYTES..]);
            if fresh.len() < plain.len() - HEADER_BYTES {
                assert_eq!(&packed[HEADER_BYTES..], &fresh[..], "{n} updates");
                assert_eq!(packed[FLAGS_AT], plain[FLAGS_AT] | FLAG_COMPRESSED);
                assert_eq!(packed[..FLAGS_AT], plain[..FLAGS_AT]);
            } else {
                assert_eq!(packed, plain, "{n} updates");
            }
        }
    }

    #[test]
    fn a_repetitive_datagram_shrinks_and_decodes_to_the_same_frames() {
        let plain = delta(40);
        let packed = compress_datagram(plain.clone());
        assert!(packed.len() < plain.len() / 2, "{} -> {}", plain.len(), packed.len());
        assert_eq!(packed[FLAGS_AT], FLAG_COMPRESSED);
        let restored = decompress_datagram(&packed).unwrap();
        assert_eq!(&*restored, &plain[..]);
        assert_eq!(decode_datagram(&restored).unwrap(), decode_datagram(&plain).unwrap());
    }

    #[test]
    fn a_datagram_that_does_not_shrink_is_sent_as_it_is() {
        let mut plain = encode_frames(&PeerId([1; 16]), &[Frame::Ping { stamp: 1 }]);
        // Incompressible bytes after a valid header.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            plain.push(x as u8);
        }
        assert_eq!(compress_datagram(plain.clone()), plain);
        // Below `MIN_COMPRESS_BYTES` of frames nothing is tried.
        let small = encode_frames(&PeerId([1; 16]), &[Frame::Ping { stamp: 0 }, Frame::SyncReq]);
        assert_eq!(compress_datagram(small.clone()), small);
    }

    #[test]
    fn a_bomb_is_rejected_without_growing_past_the_bound() {
        // A valid LZ4 block that expands to far more than a datagram may carry.
        let huge = vec![0u8; 64 * 1024];
        let block = lz4_flex::block::compress(&huge);
        let mut bytes = encode_frames(&PeerId([2; 16]), &[Frame::Ping { stamp: 1 }]);
        bytes.truncate(HEADER_BYTES);
        bytes[FLAGS_AT] |= FLAG_COMPRESSED;
        bytes.extend_from_slice(&block);
        assert!(bytes.len() <= MAX_DATAGRAM_BYTES);
        assert_eq!(decompress_datagram(&bytes), Err(DecodeError::BadCompression));
    }

    #[test]
    fn garbage_after_the_flag_is_rejected_not_a_panic() {
        let mut bytes = encode_frames(&PeerId([2; 16]), &[Frame::Ping { stamp: 1 }]);
        bytes.truncate(HEADER_BYTES);
        bytes[FLAGS_AT] |= FLAG_COMPRESSED;
        for tail in [&[0xffu8, 0xff, 0xff][..], &[0x1f, 1, 2], &[0xf0], &[]] {
            let mut b = bytes.clone();
            b.extend_from_slice(tail);
            assert!(matches!(decompress_datagram(&b), Err(DecodeError::BadCompression) | Ok(_)));
        }
        let mut b = bytes.clone();
        b.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert_eq!(decompress_datagram(&b), Err(DecodeError::BadCompression));
    }

    #[test]
    fn an_uncompressed_datagram_passes_through_untouched() {
        let plain = delta(3);
        assert!(matches!(decompress_datagram(&plain), Ok(Cow::Borrowed(b)) if b == &plain[..]));
    }
}
