//! Key and value generation.
//!
//! Keys are the decimal index of a key in the key space, zero-padded to `--key-size` bytes
//! (`00000042` for index 42 and 8-byte keys), so they are printable with etcdctl and every key of
//! the space has the same length. etcd's tool writes a varint into a zeroed buffer instead; what
//! matters for the measurement (size and number of distinct keys) is the same.

use rand::Rng;

use crate::error::BenchError;

/// How request keys are drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Length of every key in bytes.
    pub key_size: usize,
    /// Number of distinct keys.
    pub key_space_size: u64,
    /// Request `i` uses key `i mod key_space_size` instead of a uniformly random one.
    pub sequential: bool,
}

/// Decimal digits needed to write `n`.
fn decimal_digits(mut n: u64) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

impl KeySpec {
    /// Checks that the space is non-empty and every index fits in `key_size` bytes.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.key_space_size == 0 {
            return Err(BenchError::InvalidArgs(
                "--key-space-size must be at least 1".to_owned(),
            ));
        }
        let needed = decimal_digits(self.key_space_size - 1);
        if self.key_size < needed {
            return Err(BenchError::InvalidArgs(format!(
                "--key-size {} is too small for --key-space-size {}: keys need {needed} bytes",
                self.key_size, self.key_space_size
            )));
        }
        Ok(())
    }

    /// The index of the key that request number `seq` uses.
    pub fn index(&self, seq: u64, rng: &mut impl Rng) -> u64 {
        if self.sequential {
            seq % self.key_space_size
        } else {
            rng.random_range(0..self.key_space_size)
        }
    }

    /// The key with index `index`.
    pub fn key(&self, index: u64) -> Vec<u8> {
        format!("{index:0width$}", width = self.key_size).into_bytes()
    }

    /// The key that request number `seq` uses.
    pub fn key_for(&self, seq: u64, rng: &mut impl Rng) -> Vec<u8> {
        self.key(self.index(seq, rng))
    }
}

/// A value of `size` bytes (its content does not matter: the wire is not compressed).
pub fn value(size: usize) -> Vec<u8> {
    vec![b'v'; size]
}

/// A value of at least `size` bytes that carries `seq` (decimal, zero-padded); see
/// [`parse_seq_value`].
pub fn seq_value(seq: u64, size: usize) -> Vec<u8> {
    format!("{seq:0size$}").into_bytes()
}

/// The sequence number written by [`seq_value`].
pub fn parse_seq_value(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn spec(key_size: usize, key_space_size: u64, sequential: bool) -> KeySpec {
        KeySpec {
            key_size,
            key_space_size,
            sequential,
        }
    }

    #[test]
    fn keys_are_zero_padded_decimal_of_the_key_size() {
        let s = spec(8, 100_000, false);
        assert_eq!(s.key(42), b"00000042");
        assert_eq!(s.key(99_999), b"00099999");
        assert_eq!(spec(1, 1, false).key(0), b"0");
    }

    #[test]
    fn sequential_keys_cycle_through_the_space() {
        let s = spec(3, 4, true);
        let mut rng = StdRng::seed_from_u64(1);
        let keys: Vec<_> = (0..6).map(|i| s.key_for(i, &mut rng)).collect();
        let expect: Vec<&[u8]> = vec![b"000", b"001", b"002", b"003", b"000", b"001"];
        assert_eq!(keys, expect);
    }

    #[test]
    fn random_keys_stay_in_the_space_and_cover_it() {
        let s = spec(2, 10, false);
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = [0u32; 10];
        for seq in 0..2_000 {
            let i = s.index(seq, &mut rng);
            assert!(i < 10);
            seen[usize::try_from(i).unwrap()] += 1;
        }
        // 2000 uniform draws over 10 keys: every key is hit, none wildly more than others.
        assert!(seen.iter().all(|&n| (100..300).contains(&n)), "{seen:?}");
    }

    #[test]
    fn a_key_space_of_one_is_one_hot_key() {
        let s = spec(8, 1, false);
        let mut rng = StdRng::seed_from_u64(3);
        assert!((0..100).all(|seq| s.key_for(seq, &mut rng) == b"00000000"));
    }

    #[test]
    fn validation_rejects_an_empty_space_and_too_short_keys() {
        assert!(spec(8, 0, false).validate().is_err());
        assert!(spec(4, 10_001, false).validate().is_err());
        assert!(spec(4, 10_000, false).validate().is_ok());
        let err = spec(2, 1000, true).validate().unwrap_err().to_string();
        assert!(err.contains("keys need 3 bytes"), "{err}");
    }

    #[test]
    fn seq_values_round_trip_and_have_the_requested_size() {
        let v = seq_value(1234, 256);
        assert_eq!(v.len(), 256);
        assert_eq!(parse_seq_value(&v), Some(1234));
        // A value too small for the number grows rather than losing digits.
        assert_eq!(parse_seq_value(&seq_value(123_456, 2)), Some(123_456));
        assert_eq!(parse_seq_value(&value(8)), None);
    }
}
