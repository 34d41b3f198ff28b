//! The entity workload: every player owns an avatar shard of entities whose
//! state the game has already quantized (position and orientation as 16-bit
//! coordinates) and writes all of them every tick. Moving entities change by a
//! few units per tick; resting ones rewrite the same value (which must cost
//! nothing on the wire). All randomness comes from the caller's seeded RNG.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The standard bandwidth workload's shape (issue 6): 16 entities of 12 bytes,
/// about half of them moving at any time.
pub const STANDARD: EntityWorkload = EntityWorkload { entities: 16, value_bytes: 12, moving: 0.5 };

/// With `--streams`, the first this many entities of each avatar are near
/// the player: the game streams them at [`NEAR_PRIORITY`], the rest at the
/// default priority, so a short link budget favours them.
pub const NEAR_ENTITIES: usize = 4;
/// The stream priority of the entities near the player.
pub const NEAR_PRIORITY: u8 = 60;

/// Mean ticks an entity keeps moving before it rests (2 s at 20 Hz).
const MEAN_MOVING_TICKS: f64 = 40.0;

/// Largest per-tick speed of each coordinate, in quantization units, for a
/// 12-byte entity: x, y, z, yaw, pitch, roll. Longer values repeat the pattern.
/// With 1/128 m units, 32 units per tick at 20 Hz is 5 m/s.
const MAX_SPEED: [i32; 6] = [32, 32, 4, 8, 2, 0];

/// How many entities each player owns and what their values look like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntityWorkload {
    /// Entities in each player's avatar shard (keys `e0`, `e1`, ...).
    pub entities: usize,
    /// Bytes of one entity's value: little-endian 16-bit coordinates (an odd
    /// last byte stays 0).
    pub value_bytes: usize,
    /// Long-run share of entities moving at any time, in [0, 1].
    pub moving: f64,
}

/// One entity: its quantized coordinates and how they move.
#[derive(Debug, Clone)]
struct Entity {
    coords: Vec<u16>,
    velocity: Vec<i32>,
    moving: bool,
}

/// All entities of one player.
#[derive(Debug, Clone)]
pub struct Avatar {
    entities: Vec<Entity>,
}

impl EntityWorkload {
    fn coords(&self) -> usize {
        self.value_bytes / 2
    }

    /// A player's entities at the start: random places, the moving share drawn
    /// from the stationary distribution.
    pub fn avatar(&self, rng: &mut ChaCha8Rng) -> Avatar {
        let entities = (0..self.entities)
            .map(|_| {
                let n = self.coords();
                Entity {
                    coords: (0..n).map(|_| rng.gen()).collect(),
                    velocity: (0..n).map(|c| speed(rng, c)).collect(),
                    moving: rng.gen::<f64>() < self.moving,
                }
            })
            .collect();
        Avatar { entities }
    }

    /// One tick: moves the moving entities, lets some start or stop (a
    /// two-state chain whose stationary share of movers is `moving`), and
    /// returns every entity's (key, value) for the game to write.
    pub fn tick(&self, avatar: &mut Avatar, rng: &mut ChaCha8Rng) -> Vec<(Vec<u8>, Vec<u8>)> {
        let stop = 1.0 / MEAN_MOVING_TICKS;
        let start = if self.moving >= 1.0 { 1.0 } else { (stop * self.moving / (1.0 - self.moving)).min(1.0) };
        let mut out = Vec::with_capacity(avatar.entities.len());
        for (k, e) in avatar.entities.iter_mut().enumerate() {
            let flip = rng.gen::<f64>() < if e.moving { stop } else { start };
            if flip {
                e.moving = !e.moving;
            }
            if e.moving {
                for (c, (x, v)) in e.coords.iter_mut().zip(e.velocity.iter_mut()).enumerate() {
                    *x = x.wrapping_add_signed(*v as i16);
                    // Smooth motion: the velocity itself drifts by at most one unit a tick.
                    let limit = MAX_SPEED[c % MAX_SPEED.len()];
                    *v = (*v + rng.gen_range(-1..=1)).clamp(-limit, limit);
                }
            }
            let mut value = vec![0u8; self.value_bytes];
            for (c, x) in e.coords.iter().enumerate() {
                value[2 * c..2 * c + 2].copy_from_slice(&x.to_le_bytes());
            }
            out.push((format!("e{k}").into_bytes(), value));
        }
        out
    }
}

fn speed(rng: &mut ChaCha8Rng, coord: usize) -> i32 {
    let limit = MAX_SPEED[coord % MAX_SPEED.len()];
    rng.gen_range(-limit..=limit)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn about_the_configured_share_of_entities_change_each_tick() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut avatar = STANDARD.avatar(&mut rng);
        let mut last = STANDARD.tick(&mut avatar, &mut rng);
        let (mut changed, mut total) = (0usize, 0usize);
        for _ in 0..2000 {
            let now = STANDARD.tick(&mut avatar, &mut rng);
            assert_eq!(now.len(), 16);
            for (a, b) in now.iter().zip(&last) {
                assert_eq!(a.1.len(), 12);
                changed += usize::from(a.1 != b.1);
                total += 1;
            }
            last = now;
        }
        let share = changed as f64 / total as f64;
        assert!((0.35..0.6).contains(&share), "share of changed writes {share}");
    }

    #[test]
    fn a_moving_coordinate_changes_by_at_most_its_speed_limit() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let w = EntityWorkload { entities: 4, value_bytes: 12, moving: 1.0 };
        let mut avatar = w.avatar(&mut rng);
        let mut last = w.tick(&mut avatar, &mut rng);
        for _ in 0..500 {
            let now = w.tick(&mut avatar, &mut rng);
            for (a, b) in now.iter().zip(&last) {
                for (c, limit) in MAX_SPEED.iter().enumerate() {
                    let x = u16::from_le_bytes([a.1[2 * c], a.1[2 * c + 1]]);
                    let y = u16::from_le_bytes([b.1[2 * c], b.1[2 * c + 1]]);
                    let step = (x.wrapping_sub(y) as i16).unsigned_abs();
                    assert!(i32::from(step) <= *limit, "coordinate {c} moved {step}");
                }
            }
            last = now;
        }
    }
}
