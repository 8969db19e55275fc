//! End-to-end check of the WAN emulation: scripts/wan.sh builds namespaces, rules and a TUN device
//! around the `wan-router` binary, and a UDP round trip between two regions takes twice the
//! one-way delay while one inside a region does not. Needs root (CI runs as root) and python3;
//! without root it says so and passes. Takes a few seconds. It uses its own namespaces,
//! addresses, TUN device, table and rule priorities, so it does not disturb a running
//! `scripts/wan.sh up` (scripts/wan-check.sh is the fuller manual check).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::Duration,
};

const MATRIX: &str = "\
region a 10.77.201.0/24
region b 10.77.202.0/24
ns xta1 10.77.201.10
ns xta2 10.77.201.11
ns xtb1 10.77.202.10
delay a b 20ms
";

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

struct Wan {
    state: tempfile::TempDir,
}

impl Wan {
    fn command(&self) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/wan.sh"))
            .env("WAN_ROUTER", env!("CARGO_BIN_EXE_wan-router"))
            .env("WAN_STATE_DIR", self.state.path().join("wan"))
            .env("WAN_TUN", "xwantest")
            .env("WAN_TABLE", "178")
            .env("WAN_RULE_PREF", "17800");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.command().args(args).output().expect("run wan.sh");
        assert!(
            out.status.success(),
            "wan.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        let _ = self.command().arg("down").output();
    }
}

fn probe() -> PathBuf {
    repo_root().join("scripts/wan-probe.py")
}

fn in_ns(ns: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "python3"]).arg(probe());
    cmd
}

/// Minimum UDP round trip in ms from `from` to the echo server at `to_addr`:`port` in `to`.
fn min_rtt_ms(from: &str, to: &str, to_addr: &str, port: u16) -> f64 {
    let mut server: Child = in_ns(to)
        .args(["udp-echo", &port.to_string(), "5"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start echo server");
    thread::sleep(Duration::from_millis(300));
    let out = in_ns(from)
        .args(["rtt", to_addr, &port.to_string(), "5"])
        .output()
        .expect("run rtt probe");
    let _ = server.kill();
    let _ = server.wait();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "rtt probe failed: {line}");
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("min_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no min_ms in {line:?}"))
}

#[test]
fn wan_sh_delays_traffic_between_regions_only() {
    if !is_root() {
        eprintln!("skipped: the WAN emulation needs root");
        return;
    }
    let wan = Wan {
        state: tempfile::tempdir().expect("tempdir"),
    };
    let matrix = wan.state.path().join("matrix");
    std::fs::write(&matrix, MATRIX).expect("write matrix");
    let matrix = matrix.to_str().expect("utf-8 path");
    wan.run(&["up", matrix]);
    // Idempotent: a second `up` with the same matrix keeps what is there.
    let again = wan.run(&["up", matrix]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already up"));
    let addr = wan.run(&["addr", "xtb1"]);
    assert_eq!(String::from_utf8_lossy(&addr.stdout).trim(), "10.77.202.10");

    // Between regions: 2 x 20 ms, give or take scheduling (a missing or doubled delay is far off).
    let across = min_rtt_ms("xta1", "xtb1", "10.77.202.10", 7791);
    assert!((40.0..70.0).contains(&across), "a -> b RTT {across} ms");
    let back = min_rtt_ms("xtb1", "xta1", "10.77.201.10", 7792);
    assert!((40.0..70.0).contains(&back), "b -> a RTT {back} ms");
    // Inside a region: no delay (the router is bypassed).
    let inside = min_rtt_ms("xta1", "xta2", "10.77.201.11", 7793);
    assert!(inside < 20.0, "a -> a RTT {inside} ms");
    eprintln!("min RTT a->b {across:.2} ms, b->a {back:.2} ms, a->a {inside:.2} ms");

    wan.run(&["down"]);
    let left = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains("xta1"),
        "namespaces left after down"
    );
    assert!(
        !Path::new("/sys/class/net/xwantest").exists(),
        "TUN device left after down"
    );
}
