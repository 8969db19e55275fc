//! `wan-router`: the userspace delay router behind scripts/wan.sh.
//!
//! `wan-router run --tun xwan0 --matrix FILE` attaches to a TUN device, holds every IPv4 packet
//! read from it for the one-way delay of its (source region, destination region) pair and writes
//! it back. `preset`, `plan` and `show` print matrices for the script and for people.

#![allow(
    clippy::print_stderr,
    reason = "the router reports to its log on stderr"
)]

use std::{
    io::{self, Read as _, Write as _},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    thread,
    time::Duration,
};

use benchmark::wan::{
    Ipv4Prefix, MatrixBuilder, PacketSink, PacketSource, Router, RouterConfig, RouterStats,
    WanError, WanMatrix, parse_delay, preset_text,
};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "wan-router",
    about = "Delay packets between emulated regions (see scripts/wan.sh)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Attach to a TUN device and delay what passes through it (needs root).
    Run {
        /// The TUN device (created beforehand, e.g. `ip tuntap add dev xwan0 mode tun`).
        #[arg(long, default_value = "xwan0")]
        tun: String,
        #[command(flatten)]
        matrix: MatrixArgs,
        /// Most packet data held at once, in MiB; packets beyond it are dropped.
        #[arg(long, default_value_t = 256)]
        max_queue_mib: usize,
        /// Print counters to stderr every this many seconds (0: only at exit).
        #[arg(long, default_value_t = 0)]
        stats_interval: u64,
    },
    /// Print a preset matrix file (G1, G2, LAN).
    Preset {
        /// The preset's name.
        name: String,
    },
    /// Print `ns NAME ADDRESS` and `local SRC DST` lines for scripts/wan.sh.
    Plan {
        #[command(flatten)]
        matrix: MatrixArgs,
    },
    /// Validate a matrix and print its delay table (ms).
    Show {
        #[command(flatten)]
        matrix: MatrixArgs,
    },
}

/// Where the matrix comes from: a file, a preset, or flags.
#[derive(Args, Debug)]
struct MatrixArgs {
    /// A matrix file (see benchmark/src/wan/matrix.rs for the format).
    #[arg(long, conflicts_with_all = ["preset", "region"])]
    matrix: Option<PathBuf>,
    /// A preset: G1, G2 or LAN.
    #[arg(long, conflicts_with = "region")]
    preset: Option<String>,
    /// A region as NAME=CIDR[,CIDR...]; repeat for each region.
    #[arg(long)]
    region: Vec<String>,
    /// A symmetric one-way delay as A:B=DELAY (e.g. r1:r2=25ms); repeat for each pair.
    #[arg(long)]
    delay: Vec<String>,
    /// Delay for pairs of distinct regions given no --delay.
    #[arg(long)]
    default_delay: Option<String>,
}

impl MatrixArgs {
    fn load(&self) -> Result<WanMatrix, WanError> {
        if let Some(path) = &self.matrix {
            return WanMatrix::from_file(path);
        }
        if let Some(name) = &self.preset {
            return WanMatrix::preset(name);
        }
        let flag = |msg: String| WanError::Parse { line: 0, msg };
        let mut builder = MatrixBuilder::new();
        for spec in &self.region {
            let (name, cidrs) = spec
                .split_once('=')
                .ok_or_else(|| flag(format!("--region {spec:?}: want NAME=CIDR[,CIDR...]")))?;
            let prefixes = cidrs
                .split(',')
                .map(str::parse::<Ipv4Prefix>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| flag(format!("--region {spec:?}: {e}")))?;
            builder.region(name, prefixes, 0);
        }
        for spec in &self.delay {
            let parsed = spec.split_once('=').and_then(|(pair, delay)| {
                let (a, b) = pair.split_once(':')?;
                Some((a, b, delay))
            });
            let (a, b, delay) =
                parsed.ok_or_else(|| flag(format!("--delay {spec:?}: want A:B=DELAY")))?;
            let delay = parse_delay(delay).map_err(|e| flag(format!("--delay {spec:?}: {e}")))?;
            builder.delay(a, b, delay, false, 0);
        }
        if let Some(d) = &self.default_delay {
            builder
                .default_delay(parse_delay(d).map_err(|e| flag(format!("--default-delay: {e}")))?);
        }
        builder.build()
    }
}

struct TunSource(tun::Reader);

impl PacketSource for TunSource {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // A live TUN device never reads 0 bytes; the router treats 0 as closed.
        self.0.read(buf)
    }
}

struct TunSink(tun::Writer);

impl PacketSink for TunSink {
    fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
        self.0.write(pkt).map(|_| ())
    }
}

fn open_tun(name: &str) -> Result<(tun::Reader, tun::Writer), WanError> {
    let mut config = tun::Configuration::default();
    config.tun_name(name).platform_config(|p| {
        // wan.sh configures the device; the crate must not touch addresses or MTU.
        p.ensure_root_privileges(false);
    });
    let device = tun::create(&config).map_err(|e| {
        WanError::io(
            format!("attaching to TUN device {name}"),
            io::Error::other(e.to_string()),
        )
    })?;
    Ok(device.split())
}

fn spawn_stats_printer(stats: Arc<RouterStats>, every: Duration) {
    let spawned = thread::Builder::new()
        .name("wan-stats".into())
        .spawn(move || {
            loop {
                thread::sleep(every);
                eprintln!("wan-router: {}", stats.summary());
            }
        });
    if let Err(e) = spawned {
        eprintln!("wan-router: no stats thread: {e}");
    }
}

fn run(cli: Cli) -> Result<(), WanError> {
    let mut out = io::stdout().lock();
    let print = |out: &mut io::StdoutLock<'_>, text: &str| {
        out.write_all(text.as_bytes())
            .map_err(|e| WanError::io("writing to stdout", e))
    };
    match cli.cmd {
        Cmd::Preset { name } => print(&mut out, preset_text(&name)?),
        Cmd::Plan { matrix } => print(&mut out, &matrix.load()?.plan()),
        Cmd::Show { matrix } => print(&mut out, &matrix.load()?.table()),
        Cmd::Run {
            tun,
            matrix,
            max_queue_mib,
            stats_interval,
        } => {
            let matrix = matrix.load()?;
            let (reader, writer) = open_tun(&tun)?;
            eprintln!(
                "wan-router: delaying packets on {tun}; one-way delays (ms):\n{}",
                matrix.table()
            );
            let config = RouterConfig {
                max_queue_bytes: max_queue_mib.saturating_mul(1 << 20),
                ..RouterConfig::default()
            };
            let router = Router::start(matrix, config, TunSource(reader), TunSink(writer))?;
            let stats = router.stats();
            if stats_interval > 0 {
                spawn_stats_printer(Arc::clone(&stats), Duration::from_secs(stats_interval));
            }
            let result = router.join();
            eprintln!("wan-router: stopped: {}", stats.summary());
            result
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wan-router: {e}");
            ExitCode::FAILURE
        }
    }
}
