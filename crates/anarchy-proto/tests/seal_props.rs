//! Property tests of the seal (`anarchy_proto::seal`).
//!
//! Claims checked: any plain datagram seals and opens back to itself, at most
//! 20 bytes larger; flipping any bit of a sealed datagram makes it fail to
//! open; a datagram opens once and its replays are refused, in any delivery
//! order; another secret opens nothing; and no byte string makes the opener
//! panic or remember anything. The short form (a sender named by the index
//! its receiver gave it) opens back to the same plain datagram, 22 bytes
//! smaller, only at the receiver that gave the index.

use anarchy_proto::identity::PeerId;
use anarchy_proto::seal::{
    open_datagram, open_datagram_as, seal_datagram, Opener, SealError, Sealer, SessionSecret, REPLAY_WINDOW,
    SEALED_HEADER_BYTES, SEAL_OVERHEAD_BYTES, SHORT_FORM_SAVING_BYTES, SHORT_SENDER_FLAG, TAG_BYTES,
};
use anarchy_proto::wire::{put_header, MAX_PLAIN_DATAGRAM_BYTES};
use anarchy_proto::MAX_DATAGRAM_BYTES;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// Fixed seed, as in `wire_props.rs`: the same cases on every run.
/// `ANARCHY_PROPTEST_SEED=N` explores other cases.
fn cases(n: u32) -> ProptestConfig {
    let seed =
        std::env::var("ANARCHY_PROPTEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x0073_6561_6c65_6421);
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

fn secret() -> impl Strategy<Value = SessionSecret> {
    prop_oneof![
        Just(SessionSecret::open()),
        "[a-z ]{0,24}".prop_map(|p| SessionSecret::from_passphrase(&p)),
        any::<[u8; 32]>().prop_map(SessionSecret::from_bytes),
    ]
}

/// A plain datagram: a valid header (any sender, any flags but the seal's
/// own) and any frames region that fits (the seal does not look inside it).
fn plain() -> impl Strategy<Value = Vec<u8>> {
    (any::<[u8; 16]>(), any::<u8>(), prop::collection::vec(any::<u8>(), 0..=MAX_PLAIN_DATAGRAM_BYTES - 20)).prop_map(
        |(sender, flags, body)| {
            let mut out = Vec::new();
            put_header(&mut out, &PeerId(sender));
            out[3] = flags & !SHORT_SENDER_FLAG;
            out.extend_from_slice(&body);
            out
        },
    )
}

fn sender_of(plain: &[u8]) -> PeerId {
    PeerId(plain[4..20].try_into().unwrap())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn sealing_then_opening_gives_the_plain_datagram_back(
        secret in secret(), boot in any::<u32>(), counter in any::<u64>(), plain in plain(),
    ) {
        let sealed = seal_datagram(&secret, boot, counter, &plain);
        prop_assert_eq!(sealed.len(), plain.len() + SEAL_OVERHEAD_BYTES);
        prop_assert!(sealed.len() <= MAX_DATAGRAM_BYTES);
        let (header, opened) = open_datagram(&secret, &sealed).expect("opens");
        prop_assert_eq!(opened, plain.clone());
        prop_assert_eq!((header.sender, header.boot, header.counter, header.flags), (sender_of(&plain), boot, counter, plain[3]));
    }

    #[test]
    fn any_bit_flip_is_rejected(
        secret in secret(), boot in any::<u32>(), counter in any::<u64>(), plain in plain(),
        position in any::<prop::sample::Index>(), bit in 0u8..8,
    ) {
        let mut sealed = seal_datagram(&secret, boot, counter, &plain);
        let i = position.index(sealed.len());
        sealed[i] ^= 1 << bit;
        let err = open_datagram(&secret, &sealed).expect_err("a flipped bit never opens");
        match i {
            0 | 1 => prop_assert_eq!(err, SealError::BadMagic),
            2 => prop_assert!(matches!(err, SealError::UnsupportedVersion(_))),
            // The flag of the short form: a short header names no sender by itself.
            3 if bit == 7 => prop_assert!(matches!(err, SealError::UnknownIndex(_))),
            _ => prop_assert_eq!(err, SealError::BadTag),
        }
    }

    #[test]
    fn the_short_form_opens_only_where_its_index_was_given(
        secret in secret(), boot in any::<u32>(), plain in plain(), sent in 1usize..6,
        position in any::<prop::sample::Index>(), bit in 0u8..8,
    ) {
        let sender = sender_of(&plain);
        let mut sealer = Sealer::new(&secret, &sender, boot);
        let mut receiver = Opener::new(secret.clone());
        // The first datagram is long: the receiver's opener gives the sender an index.
        let first = receiver.open(&sealer.seal(&plain)).expect("long form opens");
        prop_assert!(!first.short);
        prop_assert_eq!(receiver.index_of(&sender, boot), Some(first.index));
        for _ in 0..sent {
            let short = sealer.seal_to(&plain, Some(first.index));
            prop_assert_eq!(short.len(), plain.len() + SEAL_OVERHEAD_BYTES - SHORT_FORM_SAVING_BYTES);
            prop_assert_eq!(open_datagram(&secret, &short).map(|_| ()), Err(SealError::UnknownIndex(first.index)));
            let (header, opened) = open_datagram_as(&secret, &short, &sender, boot).expect("opens as its sender");
            prop_assert_eq!(&opened, &plain);
            prop_assert_eq!(header.sender, sender);
            // Another receiver gave that index to no one.
            prop_assert!(Opener::new(secret.clone()).open(&short).is_err());
            let at_receiver = receiver.open(&short).expect("opens where the index was given");
            prop_assert!(at_receiver.short && at_receiver.newest);
            prop_assert_eq!(&at_receiver.plain, &plain);
            prop_assert_eq!(at_receiver.header.sender, sender);
            prop_assert_eq!(receiver.open(&short).map(|_| ()), Err(SealError::Replay));
            let mut bad = sealer.seal_to(&plain, Some(first.index));
            let i = position.index(bad.len());
            bad[i] ^= 1 << bit;
            prop_assert!(receiver.open(&bad).is_err(), "a flipped bit never opens (byte {})", i);
        }
    }

    #[test]
    fn another_secret_opens_nothing(a in secret(), b in secret(), plain in plain(), counter in any::<u64>()) {
        prop_assume!(a != b);
        let sealed = seal_datagram(&a, 1, counter, &plain);
        let mut opener = Opener::new(b);
        prop_assert_eq!(opener.open(&sealed).map(|_| ()), Err(SealError::BadTag));
        prop_assert_eq!(opener.tracked_senders(), 0, "a failed tag leaves no state");
    }

    #[test]
    fn each_datagram_opens_once_in_any_order(
        order in Just((0..64usize).collect::<Vec<_>>()).prop_shuffle(),
        repeats in prop::collection::vec(0..64usize, 0..32),
    ) {
        let secret = SessionSecret::open();
        let sender = PeerId([3; 16]);
        let mut plain = Vec::new();
        put_header(&mut plain, &sender);
        plain.push(13);
        let mut sealer = Sealer::new(&secret, &sender, 77);
        let sealed: Vec<Vec<u8>> = (0..64).map(|_| sealer.seal(&plain)).collect();
        let mut opener = Opener::new(secret);
        let mut newest = 0;
        for &i in &order {
            let opened = opener.open(&sealed[i]).expect("first delivery opens");
            prop_assert_eq!(&opened.plain, &plain);
            newest += usize::from(opened.newest);
        }
        prop_assert!(newest >= 1);
        for &i in order.iter().chain(&repeats) {
            prop_assert_eq!(opener.open(&sealed[i]).map(|_| ()), Err(SealError::Replay));
        }
    }

    #[test]
    fn counters_too_far_behind_are_refused(back in REPLAY_WINDOW..4 * REPLAY_WINDOW) {
        let secret = SessionSecret::open();
        let sender = PeerId([4; 16]);
        let mut plain = Vec::new();
        put_header(&mut plain, &sender);
        let top = 10 * REPLAY_WINDOW;
        let mut opener = Opener::new(secret.clone());
        opener.open(&seal_datagram(&secret, 5, top, &plain)).unwrap();
        prop_assert_eq!(opener.open(&seal_datagram(&secret, 5, top - back, &plain)).map(|_| ()), Err(SealError::Replay));
        prop_assert!(opener.open(&seal_datagram(&secret, 5, top - REPLAY_WINDOW + 1, &plain)).is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_opener_and_leave_no_state(
        secret in secret(),
        inputs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1300), 1..16),
    ) {
        let mut opener = Opener::new(secret.clone());
        for bytes in &inputs {
            let result = opener.open(bytes);
            prop_assert!(result.is_err(), "random bytes do not carry a valid tag");
            if bytes.len() > MAX_DATAGRAM_BYTES {
                prop_assert_eq!(result.map(|_| ()), Err(SealError::Oversized));
            } else if bytes.len() >= 4
                && bytes[..3] == [b'A', b'Y', anarchy_proto::wire::PROTOCOL_VERSION]
                && bytes[3] & SHORT_SENDER_FLAG == 0
                && bytes.len() < SEALED_HEADER_BYTES + TAG_BYTES
            {
                prop_assert_eq!(result.map(|_| ()), Err(SealError::Truncated));
            }
        }
        prop_assert_eq!(opener.tracked_senders(), 0);
    }

    #[test]
    fn damaged_headers_and_tails_never_panic(plain in plain(), cut in 0usize..1300, garbage in prop::collection::vec(any::<u8>(), 0..64)) {
        let secret = SessionSecret::open();
        let sealed = seal_datagram(&secret, 9, 9, &plain);
        let mut bytes = sealed[..cut.min(sealed.len())].to_vec();
        bytes.extend_from_slice(&garbage);
        let mut opener = Opener::new(secret);
        if bytes != sealed {
            prop_assert!(opener.open(&bytes).is_err());
        }
    }
}
