//! Seal: session admission and privacy for every datagram.
//!
//! Owns the session secret, the per-sender keys derived from it, sealing a
//! plain datagram (its frames region encrypted with ChaCha20, then the
//! cleartext header and the ciphertext authenticated by an 8-byte BLAKE3
//! MAC: encrypt-then-MAC under two keys derived apart) and opening one, with
//! a sliding replay window per sender and boot. Pure functions and plain values: no clock, no entropy (the
//! boot comes from the peer's seeded RNG), no knowledge of frames. A datagram
//! that fails here must be dropped before any other work is done on it.
//!
//! A sender that the receiver gave a *short index* (`Frame::ShortId`) seals
//! its datagrams to that receiver in the short form: the index and a 4-byte
//! counter take the place of the 16-byte id, 4-byte boot and 8-byte counter
//! (22 bytes less). The receiver's [`Opener`] assigns the indexes, one per
//! sender and boot it tracks, and rebuilds the long plain header on opening,
//! so nothing above the seal sees the difference.
//!
//! Layering: frames are encoded into a *plain datagram* (`wire`: header +
//! frames region), which is sealed last; on receipt the datagram is opened
//! first and the plain datagram decoded. A compression step fits between the
//! two (compress the frames region and set a header flag, then seal; open, then
//! decompress): the flags byte is part of the authenticated header.

use std::collections::BTreeMap;
use std::fmt;

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;

use crate::identity::{hex, unhex, PeerId, PEER_ID_BYTES};
use crate::wire::{HEADER_BYTES, MAGIC, MAX_DATAGRAM_BYTES, PROTOCOL_VERSION};

/// BLAKE3 `derive_key` context that turns a passphrase into a [`SessionSecret`].
pub const SESSION_SECRET_CONTEXT: &str = "anarchy 2026 session secret v1";
/// BLAKE3 `derive_key` context of the per-sender datagram keys (64 bytes of
/// output: the ChaCha20 key, then the MAC key).
pub const DATAGRAM_KEY_CONTEXT: &str = "anarchy 2026 datagram keys v2";
/// The passphrase of the default, *open* session secret. It is public: a
/// session that keeps it has no admission control and no privacy, only
/// integrity against accidental corruption and replay. For development and
/// local tests; real games set their own secret.
pub const OPEN_SESSION_PASSPHRASE: &str = "anarchy open session";

/// Domain of the signature a member gives over an address check
/// ([`addr_proof_message`]).
pub const ADDR_PROOF_CONTEXT: &[u8] = b"anarchy 2026 address proof v1";

/// What `member` signs to prove to `checker` that the address `checker` sent
/// the challenge `nonce` to is its own: the context, both ids and the nonce.
/// Bound to the checker, so a proof is no use to anyone else.
pub fn addr_proof_message(member: &PeerId, checker: &PeerId, nonce: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(ADDR_PROOF_CONTEXT.len() + 2 * PEER_ID_BYTES + 8);
    m.extend_from_slice(ADDR_PROOF_CONTEXT);
    m.extend_from_slice(&member.0);
    m.extend_from_slice(&checker.0);
    m.extend_from_slice(&nonce.to_le_bytes());
    m
}

/// Bytes of the sender's boot in the sealed header.
pub const BOOT_BYTES: usize = 4;
/// Bytes of the sender's datagram counter in the sealed header.
pub const COUNTER_BYTES: usize = 8;
/// Bytes of the tag at the end of a sealed datagram: the first 8 bytes of a
/// keyed BLAKE3 hash (a PRF, so a forgery succeeds with probability 2^-64
/// per try, whatever its length; see `docs/SECURITY.md`).
pub const TAG_BYTES: usize = 8;
/// Bytes of the cleartext header of a sealed datagram: the plain header
/// (magic, version, flags, sender) followed by the boot and the counter.
pub const SEALED_HEADER_BYTES: usize = HEADER_BYTES + BOOT_BYTES + COUNTER_BYTES;
/// What sealing adds to a plain datagram: boot, counter and tag.
pub const SEAL_OVERHEAD_BYTES: usize = BOOT_BYTES + COUNTER_BYTES + TAG_BYTES;
/// Header flag of the short form: the sender is named by the short index its
/// receiver gave it, and the counter has 4 bytes. Authenticated like the
/// other flags; never set in a plain datagram.
pub const SHORT_SENDER_FLAG: u8 = 0x80;
/// Bytes of the short index in a short-form header.
pub const SHORT_INDEX_BYTES: usize = 2;
/// Bytes of the counter in a short-form header.
pub const SHORT_COUNTER_BYTES: usize = 4;
/// Bytes of the cleartext header of a short-form sealed datagram: magic,
/// version, flags, short index, counter.
pub const SHORT_SEALED_HEADER_BYTES: usize = 4 + SHORT_INDEX_BYTES + SHORT_COUNTER_BYTES;
/// What the short form saves against the long one, per datagram.
pub const SHORT_FORM_SAVING_BYTES: usize = SEALED_HEADER_BYTES - SHORT_SEALED_HEADER_BYTES;
/// Counters remembered per sender and boot: a datagram whose counter is this
/// far or further below the highest one seen is refused as a replay. Wide
/// enough for the reordering of a session of a few hundred peers, since one
/// sender's counter runs over all its destinations.
pub const REPLAY_WINDOW: u64 = 1024;
/// Boots remembered per sender: a restarted peer has a new boot, and the
/// datagrams of its previous life still in flight are judged by their own window.
pub const BOOTS_PER_SENDER: usize = 4;
/// Senders whose replay windows are kept; the least recently heard is
/// forgotten first. Only authenticated datagrams create an entry.
pub const MAX_TRACKED_SENDERS: usize = 1024;

const WINDOW_WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// The secret every member of a session holds: 32 bytes, from a passphrase or
/// raw. The default is the public open-session secret
/// ([`OPEN_SESSION_PASSPHRASE`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret([u8; 32]);

impl SessionSecret {
    /// The secret of a passphrase: `blake3::derive_key(SESSION_SECRET_CONTEXT, passphrase)`.
    pub fn from_passphrase(passphrase: &str) -> Self {
        SessionSecret(blake3::derive_key(SESSION_SECRET_CONTEXT, passphrase.as_bytes()))
    }

    /// A secret given as 32 raw bytes (e.g. generated by a matchmaker).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SessionSecret(bytes)
    }

    /// A secret given as 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes: [u8; 32] = unhex(s.trim())?.try_into().ok()?;
        Some(SessionSecret(bytes))
    }

    /// The public secret of open sessions (the default).
    pub fn open() -> Self {
        SessionSecret::from_passphrase(OPEN_SESSION_PASSPHRASE)
    }

    /// Whether this is the public open-session secret.
    pub fn is_open(&self) -> bool {
        *self == SessionSecret::open()
    }

    /// The raw 32 bytes (keep them secret).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// A short, one-way fingerprint for logs: two members whose fingerprints
    /// differ cannot talk. Reveals nothing usable about the secret.
    pub fn fingerprint(&self) -> String {
        hex(&blake3::derive_key("anarchy 2026 session secret fingerprint v1", &self.0)[..4])
    }

    /// The keys `sender` seals with during its life `boot`: the first 64
    /// bytes of BLAKE3 in `derive_key` mode (`DATAGRAM_KEY_CONTEXT`) over
    /// `secret ‖ sender ‖ boot_le`, read as the ChaCha20 key and then the
    /// MAC key.
    pub fn datagram_keys(&self, sender: &PeerId, boot: u32) -> ([u8; 32], [u8; 32]) {
        let mut material = [0u8; 32 + PEER_ID_BYTES + BOOT_BYTES];
        material[..32].copy_from_slice(&self.0);
        material[32..32 + PEER_ID_BYTES].copy_from_slice(&sender.0);
        material[32 + PEER_ID_BYTES..].copy_from_slice(&boot.to_le_bytes());
        let mut out = [0u8; 64];
        blake3::Hasher::new_derive_key(DATAGRAM_KEY_CONTEXT).update(&material).finalize_xof().fill(&mut out);
        let (cipher, mac) = out.split_at(32);
        (cipher.try_into().expect("32 bytes"), mac.try_into().expect("32 bytes"))
    }

    fn cipher(&self, sender: &PeerId, boot: u32) -> DatagramCipher {
        let (cipher, mac) = self.datagram_keys(sender, boot);
        DatagramCipher { cipher, mac }
    }
}

/// The two keys of one sender's life: ChaCha20 for the frames region, a
/// keyed BLAKE3 MAC over the header and the ciphertext.
#[derive(Clone)]
pub struct DatagramCipher {
    cipher: [u8; 32],
    mac: [u8; 32],
}

impl DatagramCipher {
    /// Encrypts (or decrypts) `body` in place under `nonce`.
    fn apply(&self, nonce: &[u8; 12], body: &mut [u8]) {
        ChaCha20::new(&self.cipher.into(), &(*nonce).into()).apply_keystream(body);
    }

    /// The tag of a datagram: the nonce, then the cleartext header as sent,
    /// then the ciphertext, under the MAC key; its first [`TAG_BYTES`].
    fn tag(&self, nonce: &[u8; 12], header: &[u8], body: &[u8]) -> [u8; TAG_BYTES] {
        let mut h = blake3::Hasher::new_keyed(&self.mac);
        h.update(nonce).update(header).update(body);
        let mut tag = [0u8; TAG_BYTES];
        h.finalize_xof().fill(&mut tag);
        tag
    }

    /// Encrypts `body` and returns the tag over it and `header`.
    fn seal(&self, nonce: &[u8; 12], header: &[u8], body: &mut [u8]) -> [u8; TAG_BYTES] {
        self.apply(nonce, body);
        self.tag(nonce, header, body)
    }

    /// Checks the tag over `header` and the ciphertext `body` (in constant
    /// time), and only then decrypts `body` in place.
    fn open(&self, nonce: &[u8; 12], header: &[u8], body: &mut [u8], tag: &[u8]) -> Result<(), SealError> {
        let expected = self.tag(nonce, header, body);
        let diff = expected.iter().zip(tag).fold(0u8, |d, (a, b)| d | (a ^ b));
        if tag.len() != TAG_BYTES || diff != 0 {
            return Err(SealError::BadTag);
        }
        self.apply(nonce, body);
        Ok(())
    }
}

impl fmt::Debug for DatagramCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatagramCipher(..)")
    }
}

impl Default for SessionSecret {
    fn default() -> Self {
        SessionSecret::open()
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_open() {
            write!(f, "SessionSecret(open)")
        } else {
            write!(f, "SessionSecret({})", self.fingerprint())
        }
    }
}

/// Why a datagram could not be opened. Each is counted by the peer; none
/// leads to any further work on the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SealError {
    /// Larger than [`MAX_DATAGRAM_BYTES`].
    #[error("datagram larger than {MAX_DATAGRAM_BYTES} bytes")]
    Oversized,
    /// Shorter than a sealed header and a tag.
    #[error("datagram shorter than a sealed header and tag")]
    Truncated,
    /// Does not start with the protocol's magic bytes.
    #[error("not an anarchy datagram (bad magic)")]
    BadMagic,
    /// Speaks a protocol version this build does not.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The tag does not authenticate the datagram: another session's secret,
    /// a forgery or damage.
    #[error("authentication tag does not match")]
    BadTag,
    /// A counter already accepted, or too far below the highest one seen.
    #[error("replayed datagram")]
    Replay,
    /// A short-form datagram whose index names no sender we track (we
    /// forgot it, or restarted since we gave it), or one opened without a
    /// table of indexes.
    #[error("short index {0} names no sender we know")]
    UnknownIndex(u16),
}

/// The cleartext fields of a sealed datagram (of the short form: as its
/// index resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealHeader {
    /// Header flags (authenticated): [`SHORT_SENDER_FLAG`], and the plain
    /// datagram's own (`compress`).
    pub flags: u8,
    /// The sender's id.
    pub sender: PeerId,
    /// The sender's boot: random per process life, part of its key.
    pub boot: u32,
    /// The sender's datagram counter in that boot: the nonce.
    pub counter: u64,
}

/// Who sealed a datagram, as its cleartext header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// Long form: the full header.
    Long(SealHeader),
    /// Short form: (flags, index, counter); the receiver's table says the rest.
    Short(u8, u16, u64),
}

/// Reads the cleartext header of either form, checking only its length,
/// magic and version (cheap checks done before any cryptography).
fn read_named(bytes: &[u8]) -> Result<Named, SealError> {
    if bytes.len() > MAX_DATAGRAM_BYTES {
        return Err(SealError::Oversized);
    }
    if bytes.len() >= 2 && bytes[..2] != MAGIC {
        return Err(SealError::BadMagic);
    }
    if bytes.len() >= 3 && bytes[2] != PROTOCOL_VERSION {
        return Err(SealError::UnsupportedVersion(bytes[2]));
    }
    if bytes.len() >= 4 && bytes[3] & SHORT_SENDER_FLAG != 0 {
        if bytes.len() < SHORT_SEALED_HEADER_BYTES + TAG_BYTES {
            return Err(SealError::Truncated);
        }
        let index = u16::from_le_bytes([bytes[4], bytes[5]]);
        let counter = u32::from_le_bytes(bytes[6..SHORT_SEALED_HEADER_BYTES].try_into().expect("4 bytes"));
        return Ok(Named::Short(bytes[3], index, u64::from(counter)));
    }
    if bytes.len() < SEALED_HEADER_BYTES + TAG_BYTES {
        return Err(SealError::Truncated);
    }
    let mut sender = [0u8; PEER_ID_BYTES];
    sender.copy_from_slice(&bytes[4..HEADER_BYTES]);
    let boot = u32::from_le_bytes(bytes[HEADER_BYTES..HEADER_BYTES + BOOT_BYTES].try_into().expect("4 bytes"));
    let counter =
        u64::from_le_bytes(bytes[HEADER_BYTES + BOOT_BYTES..SEALED_HEADER_BYTES].try_into().expect("8 bytes"));
    Ok(Named::Long(SealHeader { flags: bytes[3], sender: PeerId(sender), boot, counter }))
}

/// Reads the cleartext header of a long-form sealed datagram, checking only
/// its length, magic and version (cheap checks done before any
/// cryptography). A short-form header names no sender by itself:
/// [`SealError::UnknownIndex`].
pub fn read_header(bytes: &[u8]) -> Result<SealHeader, SealError> {
    match read_named(bytes)? {
        Named::Long(header) => Ok(header),
        Named::Short(_, index, _) => Err(SealError::UnknownIndex(index)),
    }
}

/// The nonce is the 12 header bytes after the sender id: boot then counter,
/// little-endian. Unique per key, since a key belongs to one sender and boot.
fn nonce(boot: u32, counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..BOOT_BYTES].copy_from_slice(&boot.to_le_bytes());
    n[BOOT_BYTES..].copy_from_slice(&counter.to_le_bytes());
    n
}

/// Seals a plain datagram (`wire` header + frames region) with an explicit
/// boot and counter: the cleartext header gains the boot and counter, the
/// frames region is encrypted and the tag appended. The caller must never use
/// one (sender, boot, counter) twice; [`Sealer`] keeps that rule. The
/// short-form flag is the seal's own: it is cleared from the plain header.
pub fn seal_with(cipher: &DatagramCipher, boot: u32, counter: u64, plain: &[u8]) -> Vec<u8> {
    assert!(plain.len() >= HEADER_BYTES, "a plain datagram has a header");
    let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD_BYTES);
    out.extend_from_slice(&plain[..HEADER_BYTES]);
    out[3] &= !SHORT_SENDER_FLAG;
    out.extend_from_slice(&boot.to_le_bytes());
    out.extend_from_slice(&counter.to_le_bytes());
    out.extend_from_slice(&plain[HEADER_BYTES..]);
    let (header, body) = out.split_at_mut(SEALED_HEADER_BYTES);
    let tag = cipher.seal(&nonce(boot, counter), header, body);
    out.extend_from_slice(&tag);
    out
}

/// [`seal_with`] in the short form: `index` (the receiver's name for this
/// sender and boot) and the counter's low 4 bytes stand in the header for the
/// sender, boot and counter. The counter must fit in 4 bytes.
pub fn seal_short_with(cipher: &DatagramCipher, boot: u32, counter: u64, index: u16, plain: &[u8]) -> Vec<u8> {
    assert!(plain.len() >= HEADER_BYTES, "a plain datagram has a header");
    let short_counter = u32::try_from(counter).expect("the short form's counter has 4 bytes");
    let mut out = Vec::with_capacity(plain.len() + SHORT_SEALED_HEADER_BYTES + TAG_BYTES - HEADER_BYTES);
    out.extend_from_slice(&plain[..3]);
    out.push(plain[3] | SHORT_SENDER_FLAG);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&short_counter.to_le_bytes());
    out.extend_from_slice(&plain[HEADER_BYTES..]);
    let (header, body) = out.split_at_mut(SHORT_SEALED_HEADER_BYTES);
    let tag = cipher.seal(&nonce(boot, counter), header, body);
    out.extend_from_slice(&tag);
    out
}

/// Seals one plain datagram with a key derived on the spot (tests and tools;
/// the peer keeps a [`Sealer`]).
pub fn seal_datagram(secret: &SessionSecret, boot: u32, counter: u64, plain: &[u8]) -> Vec<u8> {
    let sender = PeerId(plain[4..HEADER_BYTES].try_into().expect("a plain datagram has a header"));
    seal_with(&secret.cipher(&sender, boot), boot, counter, plain)
}

/// Opens a datagram of either form whose sender `header` names (for the
/// short form, as its index resolved): the plain datagram gets the long
/// header back, without the short-form flag.
fn open_with(cipher: &DatagramCipher, header: &SealHeader, bytes: &[u8]) -> Result<Vec<u8>, SealError> {
    let short = header.flags & SHORT_SENDER_FLAG != 0;
    let header_len = if short { SHORT_SEALED_HEADER_BYTES } else { SEALED_HEADER_BYTES };
    let body_end = bytes.len().checked_sub(TAG_BYTES).filter(|e| *e >= header_len).ok_or(SealError::Truncated)?;
    let tag = &bytes[body_end..];
    let mut plain = Vec::with_capacity(HEADER_BYTES + body_end - header_len);
    plain.extend_from_slice(&bytes[..3]);
    plain.push(header.flags & !SHORT_SENDER_FLAG);
    plain.extend_from_slice(&header.sender.0);
    plain.extend_from_slice(&bytes[header_len..body_end]);
    cipher.open(&nonce(header.boot, header.counter), &bytes[..header_len], &mut plain[HEADER_BYTES..], tag)?;
    Ok(plain)
}

/// Opens one sealed datagram without any replay check (tests and tools; the
/// peer keeps an [`Opener`]). Returns its header and the plain datagram. A
/// short-form datagram cannot be opened this way ([`SealError::UnknownIndex`]):
/// see [`open_datagram_as`].
pub fn open_datagram(secret: &SessionSecret, bytes: &[u8]) -> Result<(SealHeader, Vec<u8>), SealError> {
    let header = read_header(bytes)?;
    let plain = open_with(&secret.cipher(&header.sender, header.boot), &header, bytes)?;
    Ok((header, plain))
}

/// [`open_datagram`] for a datagram of either form, taking a short-form one
/// as sealed by `sender` in its life `boot` (tests and tools that know who
/// sent it: the tag fails if it was someone else).
pub fn open_datagram_as(
    secret: &SessionSecret,
    bytes: &[u8],
    sender: &PeerId,
    boot: u32,
) -> Result<(SealHeader, Vec<u8>), SealError> {
    let header = match read_named(bytes)? {
        Named::Long(header) => header,
        Named::Short(flags, _, counter) => SealHeader { flags, sender: *sender, boot, counter },
    };
    let plain = open_with(&secret.cipher(&header.sender, header.boot), &header, bytes)?;
    Ok((header, plain))
}

/// Seals `plain` again as it was sealed in `sealed` (same form, index, boot
/// and counter), for test networks that rewrite datagrams in flight.
pub fn reseal_like(secret: &SessionSecret, sealed: &[u8], header: &SealHeader, plain: &[u8]) -> Vec<u8> {
    let cipher = secret.cipher(&header.sender, header.boot);
    match read_named(sealed) {
        Ok(Named::Short(_, index, _)) => seal_short_with(&cipher, header.boot, header.counter, index, plain),
        _ => seal_with(&cipher, header.boot, header.counter, plain),
    }
}

/// The sending side: one key for our id and boot, and the counter that makes
/// every nonce unique.
#[derive(Clone)]
pub struct Sealer {
    cipher: DatagramCipher,
    boot: u32,
    counter: u64,
}

impl Sealer {
    /// A sealer for `sender` in its life `boot` (random per process start).
    pub fn new(secret: &SessionSecret, sender: &PeerId, boot: u32) -> Self {
        Sealer { cipher: secret.cipher(sender, boot), boot, counter: 0 }
    }

    /// Seals a plain datagram under the next counter, in the long form.
    pub fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        self.seal_to(plain, None)
    }

    /// Seals a plain datagram under the next counter: in the short form if
    /// the receiver gave us `index` (and the counter still fits in 4 bytes),
    /// else in the long form.
    pub fn seal_to(&mut self, plain: &[u8], index: Option<u16>) -> Vec<u8> {
        // 2^64 datagrams are out of reach; a wrap would reuse a nonce, so stop.
        assert!(self.counter < u64::MAX, "datagram counter exhausted");
        let sealed = match index.filter(|_| self.counter <= u64::from(u32::MAX)) {
            Some(index) => seal_short_with(&self.cipher, self.boot, self.counter, index, plain),
            None => seal_with(&self.cipher, self.boot, self.counter, plain),
        };
        self.counter += 1;
        debug_assert!(sealed.len() <= MAX_DATAGRAM_BYTES, "sealed datagram of {} bytes", sealed.len());
        sealed
    }

    /// Our boot.
    pub fn boot(&self) -> u32 {
        self.boot
    }

    /// Datagrams sealed so far (the next counter).
    pub fn sealed(&self) -> u64 {
        self.counter
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("boot", &self.boot).field("counter", &self.counter).finish_non_exhaustive()
    }
}

/// A sliding window over one sender's counters: the highest counter accepted
/// and which of the [`REPLAY_WINDOW`] counters below it were seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest counter accepted, if any.
    top: Option<u64>,
    /// Bit `i` set: counter `top - i` was accepted.
    bits: [u64; WINDOW_WORDS],
}

impl ReplayWindow {
    /// Whether `counter` may be accepted: never seen, and not too old.
    pub fn check(&self, counter: u64) -> Result<(), SealError> {
        let Some(top) = self.top else { return Ok(()) };
        if counter > top {
            return Ok(());
        }
        let age = top - counter;
        if age >= REPLAY_WINDOW || self.bit(age) {
            return Err(SealError::Replay);
        }
        Ok(())
    }

    /// Records `counter` (which passed [`ReplayWindow::check`]); returns
    /// whether it is the highest so far.
    pub fn accept(&mut self, counter: u64) -> bool {
        debug_assert!(self.check(counter).is_ok(), "accepting a counter the window refuses");
        match self.top {
            Some(top) if counter <= top => {
                self.set(top - counter);
                false
            }
            Some(top) => {
                self.shift(counter - top);
                self.top = Some(counter);
                self.set(0);
                true
            }
            None => {
                self.top = Some(counter);
                self.set(0);
                true
            }
        }
    }

    /// The highest counter accepted.
    pub fn top(&self) -> Option<u64> {
        self.top
    }

    fn bit(&self, age: u64) -> bool {
        self.bits[(age / 64) as usize] & (1 << (age % 64)) != 0
    }

    fn set(&mut self, age: u64) {
        self.bits[(age / 64) as usize] |= 1 << (age % 64);
    }

    /// Ages every remembered counter by `n`.
    fn shift(&mut self, n: u64) {
        if n >= REPLAY_WINDOW {
            self.bits = [0; WINDOW_WORDS];
            return;
        }
        let words = (n / 64) as usize;
        let bits = (n % 64) as u32;
        for i in (0..WINDOW_WORDS).rev() {
            let mut v = 0;
            if i >= words {
                v = self.bits[i - words] << bits;
                if bits > 0 && i > words {
                    v |= self.bits[i - words - 1] >> (64 - bits);
                }
            }
            self.bits[i] = v;
        }
    }
}

/// What we remember of one life of one sender.
#[derive(Clone)]
struct BootState {
    boot: u32,
    /// The short index we gave it.
    index: u16,
    cipher: DatagramCipher,
    window: ReplayWindow,
}

/// What we remember of one sender: its last few boots, newest last.
#[derive(Clone)]
struct SenderState {
    boots: Vec<BootState>,
    /// When we last accepted a datagram from it, in accepted datagrams (for eviction).
    last_used: u64,
}

/// A datagram that passed the seal: authentic (made by a holder of the
/// session secret) and not a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Its cleartext header.
    pub header: SealHeader,
    /// Whether it is the newest datagram of its sender: from its latest boot,
    /// with a counter above every other accepted. Only such a datagram from a
    /// new address starts an address check (a reordered or delayed one does not).
    pub newest: bool,
    /// The plain datagram (`wire` header + frames region) to decode.
    pub plain: Vec<u8>,
    /// The short index this sender and boot has with us: it may seal to us
    /// in the short form under it.
    pub index: u16,
    /// Whether it came in the short form.
    pub short: bool,
}

/// The receiving side: the session secret and a replay window per sender and
/// boot. Bounded: [`MAX_TRACKED_SENDERS`] senders, [`BOOTS_PER_SENDER`] boots each.
#[derive(Clone)]
pub struct Opener {
    secret: SessionSecret,
    senders: BTreeMap<PeerId, SenderState>,
    accepted: u64,
    /// Short index → the sender and boot it names.
    indexes: BTreeMap<u16, (PeerId, u32)>,
    /// The next short index to give (they wrap, skipping those in use).
    next_index: u16,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener").field("senders", &self.senders.len()).finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener for the session of `secret`.
    pub fn new(secret: SessionSecret) -> Self {
        Opener { secret, senders: BTreeMap::new(), accepted: 0, indexes: BTreeMap::new(), next_index: 0 }
    }

    /// Senders currently remembered.
    pub fn tracked_senders(&self) -> usize {
        self.senders.len()
    }

    /// Opens a sealed datagram. In order: the cheap header checks, the replay
    /// check against a known boot's window (no cryptography for a replay),
    /// the tag, and only then is anything remembered about the sender.
    pub fn open(&mut self, bytes: &[u8]) -> Result<Opened, SealError> {
        let (header, short) = match read_named(bytes)? {
            Named::Long(header) => (header, false),
            Named::Short(flags, index, counter) => {
                let &(sender, boot) = self.indexes.get(&index).ok_or(SealError::UnknownIndex(index))?;
                (SealHeader { flags, sender, boot, counter }, true)
            }
        };
        // A known sender and boot (nearly every datagram): one look-up.
        if let Some(state) = self.senders.get_mut(&header.sender) {
            if let Some(i) = state.boots.iter().position(|b| b.boot == header.boot) {
                let b = &mut state.boots[i];
                b.window.check(header.counter)?;
                let plain = open_with(&b.cipher, &header, bytes)?;
                let highest = b.window.accept(header.counter);
                let index = b.index;
                self.accepted += 1;
                state.last_used = self.accepted;
                let newest = highest && i == state.boots.len() - 1;
                return Ok(Opened { header, newest, plain, index, short });
            }
        }
        // Every index names a tracked boot, so only the long form gets here.
        debug_assert!(!short, "an index names a boot we track");
        let cipher = self.secret.cipher(&header.sender, header.boot);
        let plain = open_with(&cipher, &header, bytes)?;
        self.remember_boot(header.sender, header.boot, cipher);
        self.accepted += 1;
        let state = self.senders.get_mut(&header.sender).expect("remembered above");
        state.last_used = self.accepted;
        let latest = state.boots.len() - 1;
        let i = state.boots.iter().position(|b| b.boot == header.boot).expect("remembered above");
        let highest = state.boots[i].window.accept(header.counter);
        let index = state.boots[i].index;
        Ok(Opened { header, newest: highest && i == latest, plain, index, short })
    }

    /// The short index of `sender` in its life `boot`, while we track it.
    pub fn index_of(&self, sender: &PeerId, boot: u32) -> Option<u16> {
        self.senders.get(sender)?.boots.iter().find(|b| b.boot == boot).map(|b| b.index)
    }

    fn remember_boot(&mut self, sender: PeerId, boot: u32, cipher: DatagramCipher) {
        if !self.senders.contains_key(&sender) && self.senders.len() >= MAX_TRACKED_SENDERS {
            let oldest = self.senders.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| *id);
            if let Some(id) = oldest {
                let gone = self.senders.remove(&id).expect("listed");
                for b in gone.boots {
                    self.indexes.remove(&b.index);
                }
            }
        }
        // At most MAX_TRACKED_SENDERS × BOOTS_PER_SENDER indexes are in use,
        // far fewer than 2^16: a free one is near. Indexes are given in turn,
        // so a forgotten one is given again only after all the others.
        while self.indexes.contains_key(&self.next_index) {
            self.next_index = self.next_index.wrapping_add(1);
        }
        let index = self.next_index;
        self.next_index = self.next_index.wrapping_add(1);
        self.indexes.insert(index, (sender, boot));
        let state = self.senders.entry(sender).or_insert_with(|| SenderState { boots: Vec::new(), last_used: 0 });
        if state.boots.len() >= BOOTS_PER_SENDER {
            let old = state.boots.remove(0);
            self.indexes.remove(&old.index);
        }
        state.boots.push(BootState { boot, index, cipher, window: ReplayWindow::default() });
        debug_assert!(state.boots.len() <= BOOTS_PER_SENDER);
        debug_assert!(self.senders.len() <= MAX_TRACKED_SENDERS);
        debug_assert!(self.indexes.len() <= MAX_TRACKED_SENDERS * BOOTS_PER_SENDER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_frames, Frame};

    fn plain(sender: PeerId) -> Vec<u8> {
        encode_frames(&sender, &[Frame::Ping { stamp: 42 }, Frame::SyncReq])
    }

    #[test]
    fn overhead_is_boot_counter_and_tag() {
        let secret = SessionSecret::from_passphrase("s");
        let sender = PeerId([7; 16]);
        let p = plain(sender);
        let mut sealer = Sealer::new(&secret, &sender, 9);
        let sealed = sealer.seal(&p);
        assert_eq!(sealed.len(), p.len() + SEAL_OVERHEAD_BYTES);
        assert_eq!(SEAL_OVERHEAD_BYTES, 20);
        assert_eq!(&sealed[..HEADER_BYTES], &p[..HEADER_BYTES], "the plain header stays in clear");
        assert_ne!(&sealed[SEALED_HEADER_BYTES..sealed.len() - TAG_BYTES], &p[HEADER_BYTES..], "frames are encrypted");
    }

    #[test]
    fn a_sealed_datagram_opens_once_and_its_replay_is_refused() {
        let secret = SessionSecret::from_passphrase("s");
        let sender = PeerId([7; 16]);
        let mut sealer = Sealer::new(&secret, &sender, 9);
        let sealed = sealer.seal(&plain(sender));
        let mut opener = Opener::new(secret);
        let opened = opener.open(&sealed).unwrap();
        assert_eq!(opened.plain, plain(sender));
        assert!(opened.newest);
        assert_eq!(opened.header, SealHeader { flags: 0, sender, boot: 9, counter: 0 });
        assert_eq!(opener.open(&sealed), Err(SealError::Replay));
    }

    #[test]
    fn another_secret_cannot_open_and_leaves_no_state() {
        let sender = PeerId([7; 16]);
        let sealed = Sealer::new(&SessionSecret::from_passphrase("a"), &sender, 1).seal(&plain(sender));
        let mut opener = Opener::new(SessionSecret::from_passphrase("b"));
        assert_eq!(opener.open(&sealed), Err(SealError::BadTag));
        assert_eq!(opener.tracked_senders(), 0);
    }

    #[test]
    fn every_byte_of_the_frames_and_the_tag_is_authenticated() {
        let secret = SessionSecret::open();
        let sender = PeerId([7; 16]);
        let mut sealer = Sealer::new(&secret, &sender, 1);
        let long = sealer.seal(&plain(sender));
        let short = sealer.seal_to(&plain(sender), Some(3));
        for (sealed, header) in [(&long, SEALED_HEADER_BYTES), (&short, SHORT_SEALED_HEADER_BYTES)] {
            assert!(open_datagram_as(&secret, sealed, &sender, 1).is_ok());
            for i in header..sealed.len() {
                for bit in [0x01, 0x80] {
                    let mut bad = sealed.clone();
                    bad[i] ^= bit;
                    let opened = open_datagram_as(&secret, &bad, &sender, 1).map(|_| ());
                    assert_eq!(opened, Err(SealError::BadTag), "byte {i} of {}", sealed.len());
                }
            }
            let cut = &sealed[..sealed.len() - 1];
            assert_eq!(open_datagram_as(&secret, cut, &sender, 1).map(|_| ()), Err(SealError::BadTag));
            let bare = &sealed[..header + TAG_BYTES - 1];
            assert_eq!(open_datagram_as(&secret, bare, &sender, 1).map(|_| ()), Err(SealError::Truncated));
        }
    }

    #[test]
    fn the_header_is_authenticated() {
        let secret = SessionSecret::open();
        let sender = PeerId([7; 16]);
        let sealed = Sealer::new(&secret, &sender, 1).seal(&plain(sender));
        for i in [3, 4, 19, 20, 23, 24, 31] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(open_datagram(&secret, &bad).map(|_| ()), Err(SealError::BadTag), "byte {i}");
        }
    }

    #[test]
    fn reordered_datagrams_within_the_window_open_and_old_ones_do_not() {
        let secret = SessionSecret::open();
        let sender = PeerId([7; 16]);
        let mut sealer = Sealer::new(&secret, &sender, 1);
        let all: Vec<Vec<u8>> = (0..REPLAY_WINDOW + 2).map(|_| sealer.seal(&plain(sender))).collect();
        let mut opener = Opener::new(secret);
        assert!(opener.open(&all[1]).unwrap().newest);
        assert!(!opener.open(&all[0]).unwrap().newest, "late but unseen: accepted, not newest");
        assert!(opener.open(&all[(REPLAY_WINDOW + 1) as usize]).unwrap().newest);
        assert_eq!(opener.open(&all[1]), Err(SealError::Replay), "now older than the window");
        assert!(opener.open(&all[2]).is_ok(), "exactly inside the window");
        assert_eq!(opener.open(&all[2]), Err(SealError::Replay));
    }

    #[test]
    fn a_restarted_sender_has_a_new_boot_and_its_old_datagrams_still_count_once() {
        let secret = SessionSecret::open();
        let sender = PeerId([7; 16]);
        let mut old_life = Sealer::new(&secret, &sender, 1);
        let (old, late) = (old_life.seal(&plain(sender)), old_life.seal(&plain(sender)));
        let new = Sealer::new(&secret, &sender, 2).seal(&plain(sender));
        let mut opener = Opener::new(secret);
        assert!(opener.open(&old).unwrap().newest);
        assert!(opener.open(&new).unwrap().newest, "a boot never seen is the sender's latest life");
        assert!(!opener.open(&late).unwrap().newest, "a late datagram of its previous life is not the newest");
        assert_eq!(opener.open(&late), Err(SealError::Replay));
        assert_eq!(opener.open(&old), Err(SealError::Replay));
        assert_eq!(opener.open(&new), Err(SealError::Replay));
    }

    #[test]
    fn sender_and_boot_tables_are_bounded() {
        let secret = SessionSecret::open();
        let mut opener = Opener::new(secret.clone());
        for i in 0..(MAX_TRACKED_SENDERS + 10) as u32 {
            let mut id = [0; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            let sender = PeerId(id);
            opener.open(&Sealer::new(&secret, &sender, 0).seal(&plain(sender))).unwrap();
        }
        assert_eq!(opener.tracked_senders(), MAX_TRACKED_SENDERS);
        let sender = PeerId([9; 16]);
        for boot in 0..10 {
            opener.open(&Sealer::new(&secret, &sender, boot).seal(&plain(sender))).unwrap();
        }
        assert_eq!(opener.senders[&sender].boots.len(), BOOTS_PER_SENDER);
    }

    #[test]
    fn the_replay_window_shifts_across_word_boundaries() {
        let mut w = ReplayWindow::default();
        for c in [5u64, 70, 64, 200, 133, 1000, 1100] {
            assert!(w.check(c).is_ok(), "{c}");
            w.accept(c);
        }
        for c in [5u64, 70, 64, 200, 133, 1000, 1100] {
            assert_eq!(w.check(c), Err(SealError::Replay), "{c}");
        }
        for c in [77u64, 134, 199, 999, 1099] {
            assert!(w.check(c).is_ok(), "{c}");
        }
        assert_eq!(w.check(1100 - REPLAY_WINDOW), Err(SealError::Replay), "just outside");
        assert!(w.check(1101 - REPLAY_WINDOW).is_ok(), "just inside");
    }

    #[test]
    fn secrets_from_passphrases_hex_and_bytes_agree_and_debug_hides_them() {
        let a = SessionSecret::from_passphrase("hunter2");
        let b = SessionSecret::from_hex(&hex(&a.to_bytes())).unwrap();
        assert_eq!(a, b);
        assert_eq!(SessionSecret::from_bytes(a.to_bytes()), a);
        assert!(SessionSecret::from_hex("abc").is_none());
        assert!(!format!("{a:?}").contains(&hex(&a.to_bytes())));
        assert_eq!(format!("{:?}", SessionSecret::default()), "SessionSecret(open)");
        assert!(SessionSecret::default().is_open() && !a.is_open());
    }
}
