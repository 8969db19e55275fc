//! Command-line flags (etcd's benchmark tool's names) and their validation into a [`Plan`].

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::conn;
use crate::error::BenchError;
use crate::keys::{self, KeySpec};
use crate::native;
use crate::runner::{self, RunOptions};
use crate::schedule::Budget;
use crate::watch_latency::{DEFAULT_PUT_RATE, WatchLatency};
use crate::workload::{RangeKeys, Workload};

/// Requests of a run when neither `--total` nor `--duration` is given (etcd's default).
pub const DEFAULT_TOTAL: u64 = 10_000;

/// Load generator for etcd-v3-API servers (xline and etcd).
#[derive(Debug, Clone, Parser)]
#[command(name = "benchmark", version)]
pub struct Cli {
    /// gRPC endpoints, comma-separated (`host:port` or `http://host:port`): the members'
    /// client URLs, or with --native their PEER URLs (where xline serves the CURP client
    /// service).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Concurrent clients (each keeps one request outstanding).
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// gRPC connections, spread round-robin over the endpoints; clients share them.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Requests to send [default: 10000 unless --duration is given].
    #[arg(long, global = true, conflicts_with = "duration")]
    pub total: Option<u64>,
    /// Run for this long instead of a number of requests (`30s`, `500ms`, `2m`, or seconds).
    #[arg(long, global = true, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Requests per second over all clients; 0 is unlimited (watch-latency: puts per second,
    /// 100 when 0).
    #[arg(long, global = true, default_value_t = 0.0)]
    pub rate: f64,
    /// Key size in bytes.
    #[arg(long, global = true, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, global = true, default_value_t = 8)]
    pub val_size: usize,
    /// Number of distinct keys.
    #[arg(long, global = true, default_value_t = 1)]
    pub key_space_size: u64,
    /// Request i uses key i mod key-space-size instead of a random key.
    #[arg(long, global = true)]
    pub sequential_keys: bool,
    /// Read consistency: l (linearizable) or s (serializable).
    #[arg(long, global = true, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// Send every request to the leader, found with Maintenance.Status.
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// Use xline's CURP client (fast path: one round trip for commuting writes) instead of the
    /// etcd API. --endpoints are then the members' peer URLs. Writes only: put, delete and
    /// txn-put (range, txn-mixed, watch-latency and lease-keepalive are refused). Each of
    /// --conns is one native client that its share of --clients use concurrently; the report
    /// adds how many requests completed on the fast path.
    #[arg(long, global = true)]
    pub native: bool,
    /// Print the report as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Never draw the progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// A request without a response after this long counts as failed.
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Seed of the random key choices [default: from the clock].
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    /// The workload.
    #[command(subcommand)]
    pub command: Command,
}

/// `--consistency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Consistency {
    /// Linearizable reads.
    #[value(name = "l")]
    #[serde(rename = "l")]
    Linearizable,
    /// Serializable reads (served by the member itself).
    #[value(name = "s")]
    #[serde(rename = "s")]
    Serializable,
}

/// The workloads.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Put keys of the key space.
    Put,
    /// Delete keys of the key space, one per request (a missing key is not an error).
    Delete,
    /// Range requests: KEY [END] every time, or one key of the key space each when KEY is
    /// not given.
    Range {
        /// The key to read.
        key: Option<String>,
        /// Range end (exclusive); without it only KEY is read.
        end: Option<String>,
        /// At most this many keys per request (0: no limit).
        #[arg(long, default_value_t = 0)]
        limit: i64,
    },
    /// Transactions whose success branch puts --txn-ops keys.
    TxnPut {
        /// Puts per transaction.
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// Transactions that read or write one key, mixed by --rw-ratio.
    TxnMixed {
        /// Reads per write.
        #[arg(long, default_value_t = 1.0)]
        rw_ratio: f64,
    },
    /// Put-to-event latency of watchers on one key.
    WatchLatency {
        /// Watch streams (spread over the connections).
        #[arg(long, default_value_t = 10)]
        streams: usize,
        /// Watchers on each stream.
        #[arg(long, default_value_t = 10)]
        watchers_per_stream: usize,
    },
    /// LeaseKeepAlive round trips, one lease and stream per client.
    LeaseKeepalive,
}

/// `30s`, `500ms`, `2m`, `1h` or a number of seconds (fractions allowed).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 30s, 500ms, 2m)"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(number * scale).map_err(|e| format!("{s:?}: {e}"))
}

/// The echo of a run's settings in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Params {
    /// Workload name.
    pub workload: String,
    /// Endpoints as given.
    pub endpoints: Vec<String>,
    /// `--clients`.
    pub clients: usize,
    /// `--conns`.
    pub conns: usize,
    /// `--total`, when the budget is a count.
    pub total: Option<u64>,
    /// `--duration` in seconds, when the budget is a time.
    pub duration_secs: Option<f64>,
    /// Requests per second, `None` when unlimited.
    pub rate: Option<f64>,
    /// `--key-size`.
    pub key_size: usize,
    /// `--val-size`.
    pub val_size: usize,
    /// `--key-space-size`.
    pub key_space_size: u64,
    /// `--sequential-keys`.
    pub sequential_keys: bool,
    /// `--consistency`.
    pub consistency: Consistency,
    /// `--target-leader`.
    pub target_leader: bool,
    /// `--native`: the CURP client instead of the etcd API.
    pub native: bool,
    /// The seed of the key choices.
    pub seed: u64,
}

/// What a validated command line asks for.
#[derive(Debug, Clone)]
pub enum Job {
    /// One request per iteration.
    Simple(Workload),
    /// watch-latency.
    Watch(WatchLatency),
}

/// A validated command line.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Endpoint URLs.
    pub urls: Vec<String>,
    /// Connections.
    pub conns: usize,
    /// Resolve the leader and send only to it.
    pub target_leader: bool,
    /// Native (CURP) clients on the members' peer URLs instead of the etcd API.
    pub native: bool,
    /// How to drive the run.
    pub run: RunOptions,
    /// The work.
    pub job: Job,
    /// JSON output.
    pub json: bool,
    /// The settings, for the report.
    pub params: Params,
}

impl Cli {
    /// Checks the flags and builds the plan.
    pub fn plan(&self) -> Result<Plan, BenchError> {
        let invalid = |m: &str| Err(BenchError::InvalidArgs(m.to_owned()));
        if self.clients == 0 {
            return invalid("--clients must be at least 1");
        }
        if self.conns == 0 {
            return invalid("--conns must be at least 1");
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return invalid("--rate must be a non-negative number");
        }
        let budget = match (self.total, self.duration) {
            (Some(0), _) => return invalid("--total must be at least 1"),
            (Some(n), None) => Budget::Total(n),
            (None, Some(d)) if d.is_zero() => return invalid("--duration must be positive"),
            (None, Some(d)) => Budget::Duration(d),
            (None, None) => Budget::Total(DEFAULT_TOTAL),
            (Some(_), Some(_)) => return invalid("give --total or --duration, not both"),
        };
        let urls = self
            .endpoints
            .iter()
            .map(|e| conn::endpoint_url(e))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return invalid("--endpoints is empty");
        }
        let keys = KeySpec {
            key_size: self.key_size,
            key_space_size: self.key_space_size,
            sequential: self.sequential_keys,
        };
        keys.validate()?;
        let serializable = self.consistency == Consistency::Serializable;
        let value = keys::value(self.val_size);
        let mut rate = (self.rate > 0.0).then_some(self.rate);
        let job = match &self.command {
            Command::Put => Job::Simple(Workload::Put { keys, value }),
            Command::Delete => Job::Simple(Workload::Delete { keys }),
            Command::Range { key, end, limit } => {
                if *limit < 0 {
                    return invalid("--limit must not be negative");
                }
                let keys = match (key, end) {
                    (Some(key), end) => RangeKeys::Fixed {
                        key: key.clone().into_bytes(),
                        range_end: end.clone().unwrap_or_default().into_bytes(),
                    },
                    (None, _) => RangeKeys::Space(keys),
                };
                Job::Simple(Workload::Range {
                    keys,
                    serializable,
                    limit: *limit,
                })
            }
            Command::TxnPut { txn_ops } => {
                if *txn_ops == 0 {
                    return invalid("--txn-ops must be at least 1");
                }
                if *txn_ops as u64 > keys.key_space_size {
                    return invalid(
                        "--txn-ops must not exceed --key-space-size (a txn puts distinct keys)",
                    );
                }
                Job::Simple(Workload::TxnPut {
                    keys,
                    value,
                    ops: *txn_ops,
                })
            }
            Command::TxnMixed { rw_ratio } => {
                if !(*rw_ratio >= 0.0 && rw_ratio.is_finite()) {
                    return invalid("--rw-ratio must be a non-negative number");
                }
                Job::Simple(Workload::TxnMixed {
                    keys,
                    value,
                    read_probability: rw_ratio / (rw_ratio + 1.0),
                    serializable,
                })
            }
            Command::WatchLatency {
                streams,
                watchers_per_stream,
            } => {
                if *streams == 0 || *watchers_per_stream == 0 {
                    return invalid("--streams and --watchers-per-stream must be at least 1");
                }
                rate = Some(rate.unwrap_or(DEFAULT_PUT_RATE));
                Job::Watch(WatchLatency {
                    key: keys.key(0),
                    val_size: self.val_size,
                    streams: *streams,
                    watchers_per_stream: *watchers_per_stream,
                })
            }
            Command::LeaseKeepalive => Job::Simple(Workload::LeaseKeepalive),
        };
        let seed = self.seed.unwrap_or_else(runner::time_seed);
        let workload = match &job {
            Job::Simple(w) => w.name().to_owned(),
            Job::Watch(_) => "watch-latency".to_owned(),
        };
        if self.native {
            native::check_workload(&workload)?;
            if self.target_leader {
                return invalid(
                    "--target-leader does not apply to --native: the native client finds the \
                     leader itself and proposes to it (and records to the other members)",
                );
            }
        }
        let params = Params {
            workload,
            endpoints: self.endpoints.clone(),
            clients: self.clients,
            conns: self.conns,
            total: match budget {
                Budget::Total(n) => Some(n),
                Budget::Duration(_) => None,
            },
            duration_secs: match budget {
                Budget::Total(_) => None,
                Budget::Duration(d) => Some(d.as_secs_f64()),
            },
            rate,
            key_size: self.key_size,
            val_size: self.val_size,
            key_space_size: self.key_space_size,
            sequential_keys: self.sequential_keys,
            consistency: self.consistency,
            target_leader: self.target_leader,
            native: self.native,
            seed,
        };
        Ok(Plan {
            urls,
            conns: self.conns,
            target_leader: self.target_leader,
            native: self.native,
            run: RunOptions {
                clients: self.clients,
                budget,
                rate,
                progress: !self.no_progress && !self.json,
                request_timeout: self.request_timeout,
                seed,
            },
            job,
            json: self.json,
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("benchmark").chain(args.iter().copied()))
    }

    fn plan(args: &[&str]) -> Result<Plan, BenchError> {
        parse(args).expect("flags parse").plan()
    }

    #[test]
    fn etcd_style_put_flags() {
        let p = plan(&[
            "--endpoints=127.0.0.1:1,http://127.0.0.1:2",
            "--clients=100",
            "--conns=10",
            "put",
            "--total=1000",
            "--key-size=8",
            "--val-size=256",
            "--key-space-size=100000",
            "--sequential-keys",
        ])
        .unwrap();
        assert_eq!(p.urls, ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        assert_eq!((p.conns, p.run.clients), (10, 100));
        assert_eq!(p.run.budget, Budget::Total(1000));
        assert_eq!(p.run.rate, None);
        let Job::Simple(Workload::Put { keys, value }) = p.job else {
            panic!("not a put: {:?}", p.job);
        };
        assert_eq!(value.len(), 256);
        assert_eq!(
            keys,
            KeySpec {
                key_size: 8,
                key_space_size: 100_000,
                sequential: true
            }
        );
    }

    #[test]
    fn defaults_are_etcds() {
        let p = plan(&["put"]).unwrap();
        assert_eq!(p.urls, ["http://127.0.0.1:2379"]);
        assert_eq!(p.run.budget, Budget::Total(DEFAULT_TOTAL));
        assert_eq!((p.conns, p.run.clients), (1, 1));
        assert_eq!(p.params.key_size, 8);
        assert_eq!(p.params.consistency, Consistency::Linearizable);
        assert!(!p.json);
    }

    #[test]
    fn range_takes_a_key_and_consistency() {
        let p = plan(&["range", "foo", "fop", "--consistency", "s", "--limit", "5"]).unwrap();
        let Job::Simple(Workload::Range {
            keys,
            serializable,
            limit,
        }) = p.job
        else {
            panic!("not a range");
        };
        assert_eq!(
            keys,
            RangeKeys::Fixed {
                key: b"foo".to_vec(),
                range_end: b"fop".to_vec()
            }
        );
        assert!(serializable);
        assert_eq!(limit, 5);
        let p = plan(&["range", "--key-space-size", "10"]).unwrap();
        assert!(matches!(
            p.job,
            Job::Simple(Workload::Range {
                keys: RangeKeys::Space(_),
                serializable: false,
                ..
            })
        ));
        assert!(parse(&["range", "--consistency", "x"]).is_err());
    }

    #[test]
    fn duration_and_rate() {
        let p = plan(&["put", "--duration", "1.5s", "--rate", "200"]).unwrap();
        assert_eq!(p.run.budget, Budget::Duration(Duration::from_millis(1500)));
        assert_eq!(p.run.rate, Some(200.0));
        assert_eq!(p.params.duration_secs, Some(1.5));
        assert!(parse(&["put", "--duration", "1s", "--total", "5"]).is_err());
        assert!(plan(&["put", "--duration", "0s"]).is_err());
        assert!(plan(&["put", "--total", "0"]).is_err());
        assert!(plan(&["put", "--rate=-1"]).is_err());
    }

    #[test]
    fn watch_latency_paces_puts_at_100_per_second_by_default() {
        let p = plan(&[
            "watch-latency",
            "--streams",
            "2",
            "--watchers-per-stream",
            "3",
        ])
        .unwrap();
        assert_eq!(p.run.rate, Some(DEFAULT_PUT_RATE));
        let Job::Watch(w) = p.job else {
            panic!("not watch-latency")
        };
        assert_eq!((w.streams, w.watchers_per_stream), (2, 3));
        assert_eq!(w.key, b"00000000");
        assert!(plan(&["watch-latency", "--streams", "0"]).is_err());
    }

    #[test]
    fn txn_workloads() {
        let p = plan(&["txn-mixed", "--rw-ratio", "3"]).unwrap();
        let Job::Simple(Workload::TxnMixed {
            read_probability, ..
        }) = p.job
        else {
            panic!("not txn-mixed")
        };
        assert!((read_probability - 0.75).abs() < 1e-12);
        assert!(plan(&["txn-put", "--txn-ops", "0"]).is_err());
        assert!(plan(&["txn-put", "--txn-ops", "2"]).is_err());
        assert!(matches!(
            plan(&["txn-put", "--txn-ops", "3", "--key-space-size", "3"])
                .unwrap()
                .job,
            Job::Simple(Workload::TxnPut { ops: 3, .. })
        ));
        assert!(matches!(
            plan(&["lease-keepalive"]).unwrap().job,
            Job::Simple(Workload::LeaseKeepalive)
        ));
    }

    #[test]
    fn native_writes_are_planned_on_peer_urls() {
        let p = plan(&[
            "--native",
            "--endpoints=127.0.0.1:2380,http://127.0.0.1:2382",
            "--clients=200",
            "--conns=4",
            "put",
            "--key-space-size=100000",
        ])
        .unwrap();
        assert!(p.native && p.params.native);
        assert_eq!(p.urls, ["http://127.0.0.1:2380", "http://127.0.0.1:2382"]);
        assert_eq!((p.conns, p.run.clients), (4, 200));
        assert!(matches!(p.job, Job::Simple(Workload::Put { .. })));
        assert!(matches!(
            plan(&["--native", "txn-put"]).unwrap().job,
            Job::Simple(Workload::TxnPut { ops: 1, .. })
        ));
        assert!(matches!(
            plan(&["delete", "--native"]).unwrap().job,
            Job::Simple(Workload::Delete { .. })
        ));
        assert!(!plan(&["put"]).unwrap().native);
    }

    #[test]
    fn native_refuses_what_it_cannot_send() {
        for args in [
            &["--native", "range"][..],
            &["--native", "range", "foo", "--consistency=s"],
            &["--native", "txn-mixed"],
            &["--native", "watch-latency"],
            &["--native", "lease-keepalive"],
        ] {
            let err = plan(args).unwrap_err();
            assert!(
                matches!(err, BenchError::NativeUnsupported { .. }),
                "{args:?}: {err}"
            );
            assert!(err.to_string().contains("without --native"), "{err}");
        }
        let err = plan(&["--native", "--target-leader", "put"]).unwrap_err();
        assert!(err.to_string().contains("--target-leader"), "{err}");
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(plan(&["put", "--clients", "0"]).is_err());
        assert!(plan(&["put", "--conns", "0"]).is_err());
        assert!(plan(&["put", "--key-size", "2", "--key-space-size", "1000"]).is_err());
        assert!(plan(&["put", "--endpoints", "https://x:1"]).is_err());
        assert!(parse(&["nosuch"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
    }
}
