//! Quorum: majority arithmetic for recovery rounds and critical updates.
//!
//! Any two majorities of one member list intersect; every rule that must not
//! lose a decision counts against a list both sides agree on.

/// The smallest number of members of an `n`-member list that is a majority.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_majorities_of_one_list_always_intersect() {
        for n in 1..50 {
            assert!(2 * majority(n) > n, "n = {n}");
            assert!(majority(n) <= n);
        }
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
    }
}
