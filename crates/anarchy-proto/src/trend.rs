//! Trend: a second-order delta for small values that move smoothly.
//!
//! Owns the arithmetic and the wire form of [`Op::Trend`](crate::wire::Op).
//! A moving entity's position changes each tick by about what it changed the
//! tick before, so its czar sends only the difference from that guess. The
//! value is cut into little-endian *lanes* of 1, 2, 4 or 8 bytes (the last
//! one may be shorter), and each lane's new value is guessed as
//! `2 × current − before`, wrapping within the lane, where `before` is the
//! value the key had before its last change. Every replica keeps `before`
//! for values of at most [`MAX_TREND_BYTES`] bytes (see
//! `Replica::apply`), and snapshots carry it, so all replicas on one history
//! make the same guess.
//!
//! Wire form, after the update's key: a header byte (the lane width code in
//! the low two bits: 1, 2, 4 or 8 bytes; the number of lanes minus one in the
//! other six), then two bits per lane, four lanes to a byte, lowest bits
//! first (0: the guess; 1: one more; 2: one less; 3: another step, given
//! after), then each other step as a zigzag varint, in lane order. Canonical:
//! the code bits past the last lane are zero, and an "other" step is none of
//! −1, 0 and 1 and fits a lane of the width.

/// Largest value, in bytes, whose previous value replicas keep for trends.
pub const MAX_TREND_BYTES: usize = 32;

/// Most lanes one trend has (six bits of the header byte).
const MAX_LANES: usize = 64;
/// Lane widths in bytes, by their two-bit code.
const WIDTHS: [usize; 4] = [1, 2, 4, 8];
/// A lane's two-bit code: the guess, one more, one less, another step.
const CODE_GUESS: u8 = 0;
const CODE_UP: u8 = 1;
const CODE_DOWN: u8 = 2;
const CODE_OTHER: u8 = 3;

/// A second-order delta: per lane, how far the new value is from the guess
/// `2 × current − before` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Trend {
    /// Bytes per lane: 1, 2, 4 or 8.
    width: u8,
    /// Per lane, the new value minus the guess, as a signed number of the
    /// lane's width.
    steps: Vec<i64>,
}

/// Why bytes on the wire are not a trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrendError {
    /// The input ended inside the trend.
    Truncated,
    /// Not the canonical form.
    Invalid,
}

impl Trend {
    /// Bytes per lane.
    pub fn width(&self) -> usize {
        usize::from(self.width)
    }

    /// Per lane, the new value minus the guess.
    pub fn steps(&self) -> &[i64] {
        &self.steps
    }

    /// The trend that turns `current` (whose value before its last change
    /// was `before`) into `new` with lanes of `width` bytes, if the three
    /// have one length of 1 to [`MAX_TREND_BYTES`] bytes.
    pub fn between(before: &[u8], current: &[u8], new: &[u8], width: usize) -> Option<Trend> {
        let len = new.len();
        if len == 0 || len > MAX_TREND_BYTES || before.len() != len || current.len() != len {
            return None;
        }
        let code = WIDTHS.iter().position(|w| *w == width)?;
        let lanes = len.div_ceil(width);
        let steps = (0..lanes)
            .map(|i| {
                let (b, bits) = lane(before, i, width);
                let (c, _) = lane(current, i, width);
                let (n, _) = lane(new, i, width);
                let guess = c.wrapping_mul(2).wrapping_sub(b);
                signed(n.wrapping_sub(guess) & mask(bits), bits)
            })
            .collect();
        Some(Trend { width: WIDTHS[code] as u8, steps })
    }

    /// The smallest trend on the wire that turns `current` into `new`, over
    /// all lane widths (see [`Trend::between`]).
    pub fn best(before: &[u8], current: &[u8], new: &[u8]) -> Option<Trend> {
        WIDTHS.iter().filter_map(|w| Trend::between(before, current, new, *w)).min_by_key(Trend::encoded_len)
    }

    /// The value this trend makes of `current`, whose value before its last
    /// change was `before`: `None` if they do not fit it (another length
    /// than each other, or than the trend's lanes cover).
    pub fn apply(&self, before: &[u8], current: &[u8]) -> Option<Vec<u8>> {
        let width = self.width();
        let len = current.len();
        if len == 0 || before.len() != len || len.div_ceil(width) != self.steps.len() {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        for (i, step) in self.steps.iter().enumerate() {
            let (b, bits) = lane(before, i, width);
            let (c, _) = lane(current, i, width);
            let n = c.wrapping_mul(2).wrapping_sub(b).wrapping_add(*step as u64) & mask(bits);
            out.extend_from_slice(&n.to_le_bytes()[..(bits / 8) as usize]);
        }
        Some(out)
    }

    /// Bytes this trend takes on the wire.
    pub fn encoded_len(&self) -> usize {
        1 + self.steps.len().div_ceil(4)
            + self
                .steps
                .iter()
                .filter(|s| !(-1..=1).contains(*s))
                .map(|s| crate::wire::varint_len(zigzag(*s)))
                .sum::<usize>()
    }

    /// Appends the wire form.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let code = WIDTHS.iter().position(|w| *w == self.width()).expect("a known width") as u8;
        debug_assert!((1..=MAX_LANES).contains(&self.steps.len()));
        out.push(code | (((self.steps.len() - 1) as u8) << 2));
        for four in self.steps.chunks(4) {
            let mut b = 0u8;
            for (j, s) in four.iter().enumerate() {
                let c = match s {
                    0 => CODE_GUESS,
                    1 => CODE_UP,
                    -1 => CODE_DOWN,
                    _ => CODE_OTHER,
                };
                b |= c << (2 * j);
            }
            out.push(b);
        }
        for s in self.steps.iter().filter(|s| !(-1..=1).contains(*s)) {
            crate::wire::put_varint(out, zigzag(*s));
        }
    }

    /// Reads the wire form: `byte` gives the next byte, `varint` the next
    /// varint. Never panics; refuses all but the canonical form.
    pub(crate) fn decode(
        mut byte: impl FnMut() -> Option<u8>,
        mut varint: impl FnMut() -> Option<u64>,
    ) -> Result<Trend, TrendError> {
        let head = byte().ok_or(TrendError::Truncated)?;
        let width = WIDTHS[usize::from(head & 0b11)];
        let lanes = usize::from(head >> 2) + 1;
        let mut codes = Vec::with_capacity(lanes);
        for i in 0..lanes.div_ceil(4) {
            let b = byte().ok_or(TrendError::Truncated)?;
            let here = (lanes - 4 * i).min(4);
            if here < 4 && b >> (2 * here) != 0 {
                return Err(TrendError::Invalid);
            }
            codes.extend((0..here).map(|j| (b >> (2 * j)) & 0b11));
        }
        let bits = (8 * width) as u32;
        let mut steps = Vec::with_capacity(lanes);
        for c in codes {
            steps.push(match c {
                CODE_GUESS => 0,
                CODE_UP => 1,
                CODE_DOWN => -1,
                _ => {
                    let s = unzigzag(varint().ok_or(TrendError::Truncated)?);
                    let fits = bits == 64 || (-(1i64 << (bits - 1))..(1i64 << (bits - 1))).contains(&s);
                    if (-1..=1).contains(&s) || !fits {
                        return Err(TrendError::Invalid);
                    }
                    s
                }
            });
        }
        Ok(Trend { width: width as u8, steps })
    }
}

/// Lane `i` of `v` (lanes of `width` bytes, little-endian) and its width in
/// bits (the last lane may be shorter).
fn lane(v: &[u8], i: usize, width: usize) -> (u64, u32) {
    let start = i * width;
    let end = (start + width).min(v.len());
    let mut x = [0u8; 8];
    x[..end - start].copy_from_slice(&v[start..end]);
    (u64::from_le_bytes(x), (8 * (end - start)) as u32)
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// `x` (the low `bits` bits) as a signed number of that many bits.
fn signed(x: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((x << shift) as i64) >> shift
}

fn zigzag(s: i64) -> u64 {
    ((s << 1) ^ (s >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coords(c: &[u16]) -> Vec<u8> {
        c.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Decodes `b`, which must be read whole.
    fn decode_all(b: &[u8]) -> Result<Trend, TrendError> {
        let it = std::cell::RefCell::new(b.iter().copied());
        let t = Trend::decode(
            || it.borrow_mut().next(),
            || {
                let mut v = 0u64;
                for i in 0..10 {
                    let b = it.borrow_mut().next()?;
                    v |= u64::from(b & 0x7f) << (7 * i);
                    if b & 0x80 == 0 {
                        return Some(v);
                    }
                }
                None
            },
        )?;
        assert_eq!(it.borrow_mut().next(), None, "the whole encoding is read");
        Ok(t)
    }

    fn roundtrip(t: &Trend) -> Trend {
        let mut out = Vec::new();
        t.encode(&mut out);
        assert_eq!(out.len(), t.encoded_len());
        decode_all(&out).expect("decodes")
    }

    #[test]
    fn steady_motion_costs_three_bytes_for_six_lanes() {
        let before = coords(&[100, 200, 300, 400, 500, 600]);
        let current = coords(&[110, 190, 301, 402, 500, 600]);
        // Each coordinate moved as last tick, give or take one unit.
        let new = coords(&[121, 180, 302, 403, 499, 600]);
        let t = Trend::best(&before, &current, &new).expect("same lengths");
        assert_eq!(t.width(), 2);
        assert_eq!(t.steps(), &[1, 0, 0, -1, -1, 0]);
        assert_eq!(t.encoded_len(), 3);
        assert_eq!(t.apply(&before, &current), Some(new));
        assert_eq!(roundtrip(&t), t);
    }

    #[test]
    fn lanes_wrap_and_a_short_last_lane_is_its_own_width() {
        let before = vec![0xff, 0xff, 0x00, 7, 9];
        let current = vec![0x00, 0x00, 0x01, 8, 200];
        let new = vec![0x01, 0x00, 0x02, 9, 3];
        for w in [1, 2, 4, 8] {
            let t = Trend::between(&before, &current, &new, w).expect("fits");
            assert_eq!(t.apply(&before, &current).as_deref(), Some(&new[..]), "width {w}");
            assert_eq!(roundtrip(&t), t, "width {w}");
        }
    }

    #[test]
    fn a_trend_fits_only_values_of_its_length() {
        let t = Trend::between(&[1, 2], &[3, 4], &[5, 6], 1).expect("fits");
        assert_eq!(t.apply(&[1], &[3, 4]), None, "before of another length");
        assert_eq!(t.apply(&[1, 2, 3], &[3, 4, 5]), None, "more lanes than the trend has");
        assert_eq!(t.apply(&[], &[]), None);
        assert_eq!(Trend::between(&[1], &[1, 2], &[1, 2], 1), None);
        assert_eq!(Trend::between(&[0; 33], &[0; 33], &[0; 33], 1), None, "too long to keep a trend for");
        assert_eq!(Trend::between(&[1], &[1], &[1], 3), None, "no such width");
    }

    #[test]
    fn only_the_canonical_form_decodes() {
        let decode = decode_all;
        assert!(decode(&[0b0000_0101, 0b0000_0110]).is_ok(), "two lanes of two bytes: one less, one more");
        assert_eq!(decode(&[0b0000_0101, 0b0001_0110]), Err(TrendError::Invalid), "a code past the last lane");
        assert_eq!(decode(&[0b0000_0000, 0b0000_0011, 2]), Err(TrendError::Invalid), "1 as another step");
        assert_eq!(decode(&[0b0000_0000, 0b0000_0011, 0]), Err(TrendError::Invalid), "0 as another step");
        assert_eq!(decode(&[0b0000_0000, 0b0000_0011, 0x80, 0x02]), Err(TrendError::Invalid), "128 in a one-byte lane");
        assert!(decode(&[0b0000_0000, 0b0000_0011, 0xfe, 0x01]).is_ok(), "127 in a one-byte lane");
        assert!(decode(&[0b0000_0001, 0b0000_0011, 0x80, 0x02]).is_ok(), "128 in a two-byte lane");
        assert_eq!(decode(&[0b0000_0000]), Err(TrendError::Truncated));
        assert_eq!(decode(&[]), Err(TrendError::Truncated));
    }

    #[test]
    fn arbitrary_values_round_trip_through_every_width() {
        // A small deterministic generator: no test depends on entropy.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..500 {
            let len = (next() % MAX_TREND_BYTES as u64) as usize + 1;
            let mut v = || (0..len).map(|_| next() as u8).collect::<Vec<u8>>();
            let (b, c, n) = (v(), v(), v());
            for w in [1, 2, 4, 8] {
                let t = Trend::between(&b, &c, &n, w).expect("fits");
                assert_eq!(t.apply(&b, &c).as_deref(), Some(&n[..]));
                assert_eq!(roundtrip(&t), t);
            }
        }
    }
}
