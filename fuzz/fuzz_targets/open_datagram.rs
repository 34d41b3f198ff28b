//! The opener (`seal::Opener`) fed a sequence of datagrams split from the
//! input never panics; a datagram sealed with the session secret opens to the
//! plain datagram it sealed, or is refused as a replay (its counter came
//! before), never as a bad tag; raw bytes never open; and the opener never
//! remembers more senders than the datagrams that opened named.
//!
//! Input layout, repeated: one control byte, then bytes.
//!   control bit 7: seal the bytes, behind a valid header, as sender
//!                  (bits 0..=1) in boot (bits 2..=3) under counter (bits 4..=6)
//!                  plus 8 times the piece's index; else the bytes arrive raw
//! Pieces are separated by the 4-byte marker `b"\xffAY\xff"`.
#![no_main]

use std::collections::BTreeSet;

use anarchy_proto::identity::PeerId;
use anarchy_proto::seal::{open_datagram, seal_datagram, Opener, SealError, SessionSecret};
use anarchy_proto::wire::put_header;
use anarchy_proto::MAX_DATAGRAM_BYTES;
use libfuzzer_sys::fuzz_target;

#[path = "../common/split.rs"]
mod split;
use split::split;



fuzz_target!(|data: &[u8]| {
    let secret = SessionSecret::from_passphrase("fuzz");
    let mut opener = Opener::new(secret.clone());
    let mut opened_senders = BTreeSet::new();
    for (index, part) in split(data).into_iter().enumerate() {
        let Some((&control, body)) = part.split_first() else { continue };
        // Stateless opening of the raw bytes never panics either.
        let _ = open_datagram(&secret, part);
        if control & 0x80 != 0 {
            let sender = PeerId([control & 0x03; 16]);
            let boot = u32::from((control >> 2) & 0x03);
            let counter = u64::from((control >> 4) & 0x07) + 8 * index as u64;
            let mut plain = Vec::new();
            put_header(&mut plain, &sender);
            plain.extend_from_slice(body);
            let sealed = seal_datagram(&secret, boot, counter, &plain);
            match opener.open(&sealed) {
                Ok(opened) => {
                    assert_eq!(opened.plain, plain, "opens to what was sealed");
                    assert_eq!(
                        (opened.header.sender, opened.header.boot, opened.header.counter),
                        (sender, boot, counter)
                    );
                    opened_senders.insert(sender);
                }
                Err(SealError::Replay) => {}
                Err(SealError::Oversized) => assert!(sealed.len() > MAX_DATAGRAM_BYTES),
                Err(e) => panic!("a sealed datagram failed with {e}"),
            }
        } else if opener.open(part).is_ok() {
            panic!("raw bytes opened");
        }
        assert!(opener.tracked_senders() <= opened_senders.len());
    }
});
