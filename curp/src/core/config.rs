//! [`Config`]: the knobs of one member's protocol core, with [`Config::validate`].

use super::types::NodeId;

/// Configuration of one member's core. Times are in ticks ([`super::Core::tick`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This member's id (never 0: 0 means "nobody" in [`crate::HardState::vote`]).
    pub id: NodeId,
    /// A follower that hears no leader for a randomized `[election_tick, 2*election_tick)`
    /// ticks starts an election.
    pub election_tick: u32,
    /// A leader sends heartbeats every `heartbeat_tick` ticks.
    pub heartbeat_tick: u32,
    /// Run a pre-vote round before campaigning, so that a partitioned member rejoining does not
    /// disrupt a healthy leader by bumping the term.
    pub pre_vote: bool,
    /// At most this many entries per `Append` message.
    pub max_append_entries: usize,
    /// Seed of the core's own PRNG (election timeouts); the same seed and inputs give the same
    /// outputs.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            id: 1,
            election_tick: 10,
            heartbeat_tick: 1,
            pre_vote: true,
            max_append_entries: 64,
            seed: 0,
        }
    }
}

/// Why a [`Config`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Id 0 is reserved for "nobody".
    #[error("member id must not be 0 (0 means \"no vote\" in the hard state)")]
    ZeroId,
    /// The heartbeat must be more frequent than elections, or followers would time out
    /// between heartbeats of a healthy leader.
    #[error(
        "heartbeat_tick ({heartbeat_tick}) must be at least 1 and below election_tick ({election_tick})"
    )]
    Ticks {
        /// The configured heartbeat interval.
        heartbeat_tick: u32,
        /// The configured election timeout.
        election_tick: u32,
    },
    /// An `Append` must be able to carry at least one entry to make progress.
    #[error("max_append_entries must be at least 1")]
    ZeroBatch,
}

impl Config {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.heartbeat_tick == 0 || self.heartbeat_tick >= self.election_tick {
            return Err(ConfigError::Ticks {
                heartbeat_tick: self.heartbeat_tick,
                election_tick: self.election_tick,
            });
        }
        if self.max_append_entries == 0 {
            return Err(ConfigError::ZeroBatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_values() {
        let bad = |f: fn(&mut Config)| {
            let mut cfg = Config::default();
            f(&mut cfg);
            cfg.validate()
        };
        assert_eq!(bad(|c| c.id = 0), Err(ConfigError::ZeroId));
        assert!(matches!(
            bad(|c| c.heartbeat_tick = 0),
            Err(ConfigError::Ticks { .. })
        ));
        assert!(matches!(
            bad(|c| c.heartbeat_tick = 10),
            Err(ConfigError::Ticks { .. })
        ));
        assert_eq!(
            bad(|c| c.max_append_entries = 0),
            Err(ConfigError::ZeroBatch)
        );
    }
}
