//! Identity: Ed25519 keypairs and the peer ids derived from them.
//!
//! A peer id is a hash of the public key, never of an address, so a peer keeps
//! its id across address changes and nobody can claim an id without the key.

use std::fmt;

use ed25519_dalek::Signer;

/// Bytes in a [`PeerId`].
pub const PEER_ID_BYTES: usize = 16;
/// Bytes in an Ed25519 public key.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// Bytes in an Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;

const PEER_ID_CONTEXT: &str = "anarchy 2026 peer id v1";

/// A peer's identity in the session: the first 16 bytes of a keyed BLAKE3
/// hash of its Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub [u8; PEER_ID_BYTES]);

// Ordered by its bytes, lexicographically (as the derived order would be), but
// compared as one big-endian integer: ids key the busiest maps, and a derived
// order calls `memcmp` for every comparison.
impl Ord for PeerId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        u128::from_be_bytes(self.0).cmp(&u128::from_be_bytes(other.0))
    }
}

impl PartialOrd for PeerId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PeerId {
    /// Derives the id that belongs to `public_key`.
    pub fn from_public_key(public_key: &PublicKey) -> Self {
        let hash = blake3::derive_key(PEER_ID_CONTEXT, &public_key.0);
        let mut id = [0u8; PEER_ID_BYTES];
        id.copy_from_slice(&hash[..PEER_ID_BYTES]);
        PeerId(id)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; PEER_ID_BYTES] {
        &self.0
    }

    /// A short hex prefix for logs and tables.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl std::str::FromStr for PeerId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = unhex(s).ok_or(IdentityError::BadHex)?;
        let id: [u8; PEER_ID_BYTES] = bytes.try_into().map_err(|_| IdentityError::BadLength)?;
        Ok(PeerId(id))
    }
}

/// An Ed25519 public key as it travels on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_BYTES]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex(&self.0[..4]))
    }
}

impl PublicKey {
    /// Checks `signature` over `message` with strict verification (rejects
    /// small-order keys and non-canonical signatures).
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_BYTES]) -> bool {
        let Some(key) = self.verifying_key() else { return false };
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(message, &sig).is_ok()
    }

    /// The decompressed key. Decompressing a point costs about as much as a
    /// third of a verification and a session has few keys, so they are kept
    /// per thread (bounded; the answer never depends on the cache).
    fn verifying_key(&self) -> Option<ed25519_dalek::VerifyingKey> {
        thread_local! {
            static KEYS: std::cell::RefCell<std::collections::HashMap<[u8; PUBLIC_KEY_BYTES], ed25519_dalek::VerifyingKey>> =
                std::cell::RefCell::new(std::collections::HashMap::new());
        }
        const MAX_CACHED_KEYS: usize = 4096;
        if let Some(key) = KEYS.with(|k| k.borrow().get(&self.0).copied()) {
            return Some(key);
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0).ok()?;
        KEYS.with(|k| {
            let mut k = k.borrow_mut();
            if k.len() >= MAX_CACHED_KEYS {
                k.clear();
            }
            k.insert(self.0, key);
        });
        Some(key)
    }
}

/// A peer's Ed25519 keypair.
#[derive(Clone)]
pub struct Keypair {
    signing: ed25519_dalek::SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({:?})", self.peer_id())
    }
}

impl Keypair {
    /// Builds a keypair from a 32-byte secret seed. Drivers draw the seed from
    /// the OS; tests and the simulator derive it from their own seed.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Keypair { signing: ed25519_dalek::SigningKey::from_bytes(&secret) }
    }

    /// Derives a keypair deterministically from a number (tests, simulator, demo).
    pub fn from_seed(seed: u64) -> Self {
        let secret = blake3::derive_key("anarchy 2026 test keypair v1", &seed.to_le_bytes());
        Self::from_secret(secret)
    }

    /// The 32-byte secret seed, for saving the identity to a file.
    pub fn secret(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The id derived from the public key.
    pub fn peer_id(&self) -> PeerId {
        PeerId::from_public_key(&self.public_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_BYTES] {
        self.signing.sign(message).to_bytes()
    }

    /// The X25519 Diffie-Hellman secret this keypair shares with the owner of
    /// `their` key: both sides get the same 32 bytes (each with its own secret
    /// and the other's public key, both Ed25519 keys taken to their Montgomery
    /// form, as `ed25519_dalek` documents). `None` for a key that is not a
    /// curve point or whose result is all zeros (a small-order key). Used only
    /// as input to a keyed derivation ([`crate::proof::pair_key`]).
    pub fn agree(&self, their: &PublicKey) -> Option<[u8; 32]> {
        let point = ed25519_dalek::VerifyingKey::from_bytes(&their.0).ok()?.to_montgomery();
        let shared = point.mul_clamped(self.signing.to_scalar_bytes()).to_bytes();
        (shared != [0; 32]).then_some(shared)
    }
}

/// Errors parsing identities from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The text is not valid hexadecimal.
    #[error("not valid hexadecimal")]
    BadHex,
    /// The text decodes to the wrong number of bytes.
    #[error("wrong length")]
    BadLength,
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses lower- or upper-case hex; `None` on any bad digit or odd length.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    s.as_bytes().chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_comes_from_the_public_key_only() {
        let a = Keypair::from_seed(1);
        let b = Keypair::from_seed(1);
        let c = Keypair::from_seed(2);
        assert_eq!(a.peer_id(), b.peer_id());
        assert_ne!(a.peer_id(), c.peer_id());
        assert_eq!(a.peer_id(), PeerId::from_public_key(&a.public_key()));
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let a = Keypair::from_seed(7);
        let sig = a.sign(b"hello");
        assert!(a.public_key().verify(b"hello", &sig));
        assert!(!a.public_key().verify(b"hellp", &sig));
        assert!(!Keypair::from_seed(8).public_key().verify(b"hello", &sig));
    }

    #[test]
    fn both_sides_agree_on_one_secret_that_a_third_does_not_share() {
        let (a, b, c) = (Keypair::from_seed(1), Keypair::from_seed(2), Keypair::from_seed(3));
        let ab = a.agree(&b.public_key()).expect("a curve point");
        assert_eq!(Some(ab), b.agree(&a.public_key()));
        assert_ne!(Some(ab), c.agree(&a.public_key()));
        assert_ne!(Some(ab), c.agree(&b.public_key()));
        // The identity point (small order) gives no secret.
        let mut identity = [0u8; PUBLIC_KEY_BYTES];
        identity[0] = 1;
        assert_eq!(a.agree(&PublicKey(identity)), None);
    }

    #[test]
    fn peer_id_text_round_trips_and_rejects_junk() {
        let id = Keypair::from_seed(3).peer_id();
        assert_eq!(id.to_string().parse::<PeerId>().unwrap(), id);
        assert_eq!("zz".parse::<PeerId>(), Err(IdentityError::BadHex));
        assert_eq!("abcd".parse::<PeerId>(), Err(IdentityError::BadLength));
    }

    #[test]
    fn ids_order_by_their_bytes() {
        let ids: Vec<PeerId> = (0..64u64).map(|i| Keypair::from_seed(i).peer_id()).collect();
        for a in &ids {
            for b in &ids {
                assert_eq!(a.cmp(b), a.0.cmp(&b.0));
            }
        }
        let mut x = [0u8; PEER_ID_BYTES];
        x[PEER_ID_BYTES - 1] = 1;
        assert!(PeerId([0; PEER_ID_BYTES]) < PeerId(x));
        assert!(PeerId(x) < PeerId([0xff; PEER_ID_BYTES]));
    }
}
