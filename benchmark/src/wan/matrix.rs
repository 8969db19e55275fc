//! The delay matrix: regions (address prefixes), the namespaces placed in them, and the one-way
//! delay of every (source region, destination region) pair.
//!
//! File format, one directive a line, `#` starts a comment:
//!
//! ```text
//! region NAME CIDR [CIDR...]   # a region and the IPv4 prefixes that identify it
//! ns NAME ADDRESS              # a namespace scripts/wan.sh creates (address inside a region)
//! delay A B DELAY [oneway]     # one-way delay A->B, and B->A too unless `oneway`
//! default DELAY                # delay for every pair of distinct regions not listed
//! ```
//!
//! `DELAY` is a number with an optional unit: `ms` (the default), `us` or `s`, e.g. `25`, `12.5ms`.
//! The delay inside a region is 0 unless given with `delay A A ...`. Every pair of distinct
//! regions needs a delay (or a `default`): a forgotten pair is an error, not a silent 0.

use std::{collections::HashMap, fmt, fmt::Write as _, net::Ipv4Addr, path::Path, time::Duration};

use super::error::WanError;

/// Index of a region in [`WanMatrix::regions`].
pub type RegionId = usize;

/// The largest one-way delay accepted (a typo guard: minutes of delay would hold gigabytes).
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// Longest namespace name accepted: wan.sh derives the root-side veth name `NAME-h` from it and
/// Linux interface names have at most 15 bytes.
pub const MAX_NS_NAME: usize = 12;

/// An IPv4 prefix such as `10.77.1.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Prefix {
    net: u32,
    len: u8,
}

impl Ipv4Prefix {
    /// A prefix of `len` bits (host bits of `addr` are cleared).
    ///
    /// # Errors
    /// If `len` is above 32.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, String> {
        if len > 32 {
            return Err(format!("prefix length {len} is above 32"));
        }
        Ok(Self {
            net: u32::from(addr) & Self::mask_of(len),
            len,
        })
    }

    fn mask_of(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    /// The prefix length in bits.
    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `addr` lies inside this prefix.
    #[must_use]
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & Self::mask_of(self.len) == self.net
    }

    /// Whether the two prefixes share at least one address.
    #[must_use]
    pub fn overlaps(&self, other: &Self) -> bool {
        let len = self.len.min(other.len);
        let mask = Self::mask_of(len);
        self.net & mask == other.net & mask
    }
}

impl std::str::FromStr for Ipv4Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR prefix (like 10.77.1.0/24)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let len: u8 = len
            .parse()
            .map_err(|_| format!("{len:?} is not a prefix length"))?;
        Self::new(addr, len)
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.net), self.len)
    }
}

/// A region: a name and the address prefixes of the hosts in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Its name, as used by `delay` lines.
    pub name: String,
    /// The prefixes that identify it.
    pub prefixes: Vec<Ipv4Prefix>,
}

/// A network namespace that scripts/wan.sh creates, and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The namespace's name (`ip netns` name).
    pub name: String,
    /// Its only address.
    pub addr: Ipv4Addr,
    /// The region its address lies in.
    pub region: RegionId,
}

/// A validated delay matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WanMatrix {
    regions: Vec<Region>,
    namespaces: Vec<Namespace>,
    /// Row-major `regions.len()` x `regions.len()`: `delays[from * n + to]`.
    delays: Vec<Duration>,
    /// Every prefix with its region, longest first (for longest-prefix match).
    routes: Vec<(Ipv4Prefix, RegionId)>,
}

/// Parses a delay: a number with an optional unit `ms` (default), `us` or `s`.
///
/// # Errors
/// If it is not a non-negative number, has an unknown unit, or exceeds [`MAX_DELAY`].
pub fn parse_delay(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1e-3)
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a delay (like 25ms, 12.5, 800us)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("delay {s:?} must be a non-negative number"));
    }
    let secs = value * scale;
    if secs > MAX_DELAY.as_secs_f64() {
        return Err(format!("delay {s:?} is above the {MAX_DELAY:?} limit"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Collects directives (from a file or from flags) and validates them into a [`WanMatrix`].
#[derive(Debug, Default)]
pub struct MatrixBuilder {
    regions: Vec<(Region, usize)>,
    namespaces: Vec<(String, Ipv4Addr, usize)>,
    delays: Vec<(String, String, Duration, bool, usize)>,
    default: Option<Duration>,
}

impl MatrixBuilder {
    /// An empty builder.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a region; `line` is reported in errors.
    pub fn region(&mut self, name: &str, prefixes: Vec<Ipv4Prefix>, line: usize) -> &mut Self {
        self.regions.push((
            Region {
                name: name.to_owned(),
                prefixes,
            },
            line,
        ));
        self
    }

    /// Adds a namespace.
    pub fn namespace(&mut self, name: &str, addr: Ipv4Addr, line: usize) -> &mut Self {
        self.namespaces.push((name.to_owned(), addr, line));
        self
    }

    /// Adds the one-way delay `from -> to`, and `to -> from` too unless `oneway`.
    pub fn delay(
        &mut self,
        from: &str,
        to: &str,
        delay: Duration,
        oneway: bool,
        line: usize,
    ) -> &mut Self {
        self.delays
            .push((from.to_owned(), to.to_owned(), delay, oneway, line));
        self
    }

    /// Sets the delay of every pair of distinct regions not given explicitly.
    pub fn default_delay(&mut self, delay: Duration) -> &mut Self {
        self.default = Some(delay);
        self
    }

    /// Parses matrix-file text into this builder.
    ///
    /// # Errors
    /// [`WanError::Parse`] on the first line that is not a valid directive.
    pub fn parse_text(&mut self, text: &str) -> Result<&mut Self, WanError> {
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let content = raw.split('#').next().unwrap_or("");
            let words: Vec<&str> = content.split_whitespace().collect();
            let Some((&directive, args)) = words.split_first() else {
                continue;
            };
            match directive {
                "region" => {
                    let [name, cidrs @ ..] = args else {
                        return Err(WanError::parse(line, "usage: region NAME CIDR [CIDR...]"));
                    };
                    if cidrs.is_empty() {
                        return Err(WanError::parse(line, "usage: region NAME CIDR [CIDR...]"));
                    }
                    let prefixes = cidrs
                        .iter()
                        .map(|c| c.parse::<Ipv4Prefix>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| WanError::parse(line, e))?;
                    self.region(name, prefixes, line);
                }
                "ns" => {
                    let [name, addr] = args else {
                        return Err(WanError::parse(line, "usage: ns NAME ADDRESS"));
                    };
                    let addr: Ipv4Addr = addr.parse().map_err(|_| {
                        WanError::parse(line, format!("{addr:?} is not an IPv4 address"))
                    })?;
                    self.namespace(name, addr, line);
                }
                "delay" => {
                    let (from, to, delay, oneway) = match args {
                        [from, to, delay] => (from, to, delay, false),
                        [from, to, delay, "oneway"] => (from, to, delay, true),
                        _ => {
                            return Err(WanError::parse(line, "usage: delay A B DELAY [oneway]"));
                        }
                    };
                    let delay = parse_delay(delay).map_err(|e| WanError::parse(line, e))?;
                    self.delay(from, to, delay, oneway, line);
                }
                "default" => {
                    let [delay] = args else {
                        return Err(WanError::parse(line, "usage: default DELAY"));
                    };
                    let delay = parse_delay(delay).map_err(|e| WanError::parse(line, e))?;
                    self.default_delay(delay);
                }
                other => {
                    return Err(WanError::parse(
                        line,
                        format!("unknown directive {other:?} (region, ns, delay, default)"),
                    ));
                }
            }
        }
        Ok(self)
    }

    /// Validates everything collected so far.
    ///
    /// # Errors
    /// [`WanError::Invalid`] for duplicate or overlapping regions, unknown region names, a
    /// namespace outside every region, contradicting delays or a missing pair.
    pub fn build(&self) -> Result<WanMatrix, WanError> {
        let invalid = |msg: String| WanError::Invalid(msg);
        if self.regions.is_empty() {
            return Err(invalid("no region defined".into()));
        }
        let mut by_name: HashMap<&str, RegionId> = HashMap::new();
        for (id, (region, line)) in self.regions.iter().enumerate() {
            if by_name.insert(region.name.as_str(), id).is_some() {
                return Err(invalid(format!(
                    "line {line}: region {:?} defined twice",
                    region.name
                )));
            }
        }
        let mut routes: Vec<(Ipv4Prefix, RegionId)> = Vec::new();
        for (id, (region, line)) in self.regions.iter().enumerate() {
            for prefix in &region.prefixes {
                if let Some((other, other_id)) = routes.iter().find(|(p, _)| p.overlaps(prefix)) {
                    return Err(invalid(format!(
                        "line {line}: prefix {prefix} of region {:?} overlaps {other} of region {:?}",
                        region.name, self.regions[*other_id].0.name
                    )));
                }
                routes.push((*prefix, id));
            }
        }
        routes.sort_by_key(|(p, _)| std::cmp::Reverse(p.prefix_len()));

        let n = self.regions.len();
        let mut delays: Vec<Option<Duration>> = vec![None; n * n];
        let lookup = |name: &str, line: usize| {
            by_name
                .get(name)
                .copied()
                .ok_or_else(|| invalid(format!("line {line}: unknown region {name:?}")))
        };
        for (from, to, delay, oneway, line) in &self.delays {
            let a = lookup(from, *line)?;
            let b = lookup(to, *line)?;
            let mut set = |i: usize, j: usize| match delays[i * n + j] {
                Some(old) if old != *delay => Err(invalid(format!(
                    "line {line}: delay {} -> {} given as {old:?} and as {delay:?}",
                    self.regions[i].0.name, self.regions[j].0.name
                ))),
                _ => {
                    delays[i * n + j] = Some(*delay);
                    Ok(())
                }
            };
            set(a, b)?;
            if !oneway {
                set(b, a)?;
            }
        }
        let mut resolved = Vec::with_capacity(n * n);
        for i in 0..n {
            for j in 0..n {
                let d = match (delays[i * n + j], i == j) {
                    (Some(d), _) => d,
                    (None, true) => Duration::ZERO,
                    (None, false) => self.default.ok_or_else(|| {
                        invalid(format!(
                            "no delay given for {} -> {} (add a delay line or a default)",
                            self.regions[i].0.name, self.regions[j].0.name
                        ))
                    })?,
                };
                resolved.push(d);
            }
        }

        let mut namespaces = Vec::new();
        for (name, addr, line) in &self.namespaces {
            let valid_name = !name.is_empty()
                && name.len() <= MAX_NS_NAME
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid_name {
                return Err(invalid(format!(
                    "line {line}: namespace name {name:?} must be 1-{MAX_NS_NAME} of [A-Za-z0-9_-]"
                )));
            }
            if namespaces.iter().any(|ns: &Namespace| ns.name == *name) {
                return Err(invalid(format!(
                    "line {line}: namespace {name:?} defined twice"
                )));
            }
            if let Some(ns) = namespaces.iter().find(|ns: &&Namespace| ns.addr == *addr) {
                return Err(invalid(format!(
                    "line {line}: namespaces {:?} and {name:?} share address {addr}",
                    ns.name
                )));
            }
            let region = routes
                .iter()
                .find(|(p, _)| p.contains(*addr))
                .map(|(_, id)| *id)
                .ok_or_else(|| {
                    invalid(format!(
                        "line {line}: address {addr} of namespace {name:?} is in no region"
                    ))
                })?;
            namespaces.push(Namespace {
                name: name.clone(),
                addr: *addr,
                region,
            });
        }

        Ok(WanMatrix {
            regions: self.regions.iter().map(|(r, _)| r.clone()).collect(),
            namespaces,
            delays: resolved,
            routes,
        })
    }
}

/// G1, Xline's published geometry: three members in three places and a client elsewhere.
pub const PRESET_G1: &str = "\
# G1 (Xline's published setup): 3 members, 1 client, one-way delays:
#   client<->member1 75 ms, client<->member2 75 ms, client<->member3 50 ms,
#   member<->member 50 ms. Member 1 is meant to be the initial leader.
region m1 10.77.1.0/24
region m2 10.77.2.0/24
region m3 10.77.3.0/24
region client 10.77.4.0/24
ns xr1 10.77.1.10
ns xr2 10.77.2.10
ns xr3 10.77.3.10
ns xc1 10.77.4.20
delay client m1 75ms
delay client m2 75ms
delay client m3 50ms
delay m1 m2 50ms
delay m1 m3 50ms
delay m2 m3 50ms
";

/// G2: three regions, each with a member and a client; 25/50/75 ms between region pairs.
pub const PRESET_G2: &str = "\
# G2: 3 regions, each with a member (xrN) and a client (xcN); 0 ms inside a region.
# one-way delays: r1<->r2 25 ms, r2<->r3 50 ms, r1<->r3 75 ms.
region r1 10.77.1.0/24
region r2 10.77.2.0/24
region r3 10.77.3.0/24
ns xr1 10.77.1.10
ns xc1 10.77.1.20
ns xr2 10.77.2.10
ns xc2 10.77.2.20
ns xr3 10.77.3.10
ns xc3 10.77.3.20
delay r1 r2 25ms
delay r2 r3 50ms
delay r1 r3 75ms
";

/// LAN: the same namespaces as G2, all in one region, no delay at all.
pub const PRESET_LAN: &str = "\
# LAN: the namespaces of G2 in one region, no delay (traffic never enters the router).
region lan 10.77.0.0/16
ns xr1 10.77.1.10
ns xc1 10.77.1.20
ns xr2 10.77.2.10
ns xc2 10.77.2.20
ns xr3 10.77.3.10
ns xc3 10.77.3.20
";

/// The text of a named preset (`G1`, `G2`, `LAN`; case-insensitive).
///
/// # Errors
/// [`WanError::UnknownPreset`] for any other name.
pub fn preset_text(name: &str) -> Result<&'static str, WanError> {
    match name.to_ascii_uppercase().as_str() {
        "G1" => Ok(PRESET_G1),
        "G2" => Ok(PRESET_G2),
        "LAN" => Ok(PRESET_LAN),
        _ => Err(WanError::UnknownPreset(name.to_owned())),
    }
}

impl WanMatrix {
    /// Parses and validates matrix-file text.
    ///
    /// # Errors
    /// See [`MatrixBuilder::parse_text`] and [`MatrixBuilder::build`].
    pub fn parse(text: &str) -> Result<Self, WanError> {
        MatrixBuilder::new().parse_text(text)?.build()
    }

    /// Reads and validates a matrix file.
    ///
    /// # Errors
    /// If the file cannot be read or is not a valid matrix.
    pub fn from_file(path: &Path) -> Result<Self, WanError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| WanError::io(format!("reading {}", path.display()), e))?;
        Self::parse(&text)
    }

    /// A named preset (`G1`, `G2`, `LAN`).
    ///
    /// # Errors
    /// [`WanError::UnknownPreset`] for an unknown name.
    pub fn preset(name: &str) -> Result<Self, WanError> {
        Self::parse(preset_text(name)?)
    }

    /// The regions, in definition order.
    #[must_use]
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The namespaces, in definition order.
    #[must_use]
    pub fn namespaces(&self) -> &[Namespace] {
        &self.namespaces
    }

    /// The region with this name.
    #[must_use]
    pub fn region_id(&self, name: &str) -> Option<RegionId> {
        self.regions.iter().position(|r| r.name == name)
    }

    /// The one-way delay from region `from` to region `to`.
    ///
    /// # Panics
    /// If either id is out of range.
    #[must_use]
    pub fn delay(&self, from: RegionId, to: RegionId) -> Duration {
        let n = self.regions.len();
        assert!(from < n && to < n, "region id out of range");
        self.delays[from * n + to]
    }

    /// The region `addr` belongs to (longest matching prefix), if any.
    #[must_use]
    pub fn region_of(&self, addr: Ipv4Addr) -> Option<RegionId> {
        self.routes
            .iter()
            .find(|(p, _)| p.contains(addr))
            .map(|(_, id)| *id)
    }

    /// Lines for scripts/wan.sh: `ns NAME ADDRESS` for each namespace, then `local SRC DST` for
    /// each pair of prefixes of one region whose internal delay is 0 (traffic that may bypass
    /// the router).
    #[must_use]
    pub fn plan(&self) -> String {
        let mut out = String::new();
        for ns in &self.namespaces {
            let _ = writeln!(out, "ns {} {}", ns.name, ns.addr);
        }
        for (id, region) in self.regions.iter().enumerate() {
            if self.delay(id, id).is_zero() {
                for src in &region.prefixes {
                    for dst in &region.prefixes {
                        let _ = writeln!(out, "local {src} {dst}");
                    }
                }
            }
        }
        out
    }

    /// A human-readable table of the one-way delays in milliseconds (rows: from, columns: to).
    #[must_use]
    pub fn table(&self) -> String {
        let width = self
            .regions
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(0)
            .max(8);
        let mut out = format!("{:width$}", "from\\to");
        for r in &self.regions {
            let _ = write!(out, " {:>width$}", r.name);
        }
        out.push('\n');
        for (i, r) in self.regions.iter().enumerate() {
            let _ = write!(out, "{:width$}", r.name);
            for j in 0..self.regions.len() {
                let ms = self.delay(i, j).as_secs_f64() * 1e3;
                let _ = write!(out, " {ms:>width$.1}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn delays_parse_with_units() {
        assert_eq!(parse_delay("25").unwrap(), ms(25));
        assert_eq!(parse_delay("25ms").unwrap(), ms(25));
        assert_eq!(
            parse_delay("12.5ms").unwrap(),
            Duration::from_micros(12_500)
        );
        assert_eq!(parse_delay("800us").unwrap(), Duration::from_micros(800));
        assert_eq!(parse_delay("1s").unwrap(), ms(1000));
        assert_eq!(parse_delay("0").unwrap(), Duration::ZERO);
        for bad in ["", "ms", "-1ms", "abc", "25min", "11s", "NaN", "inf"] {
            assert!(parse_delay(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn prefixes_parse_and_match() {
        let p: Ipv4Prefix = "10.77.1.99/24".parse().unwrap();
        assert_eq!(p.to_string(), "10.77.1.0/24");
        assert!(p.contains("10.77.1.0".parse().unwrap()));
        assert!(p.contains("10.77.1.255".parse().unwrap()));
        assert!(!p.contains("10.77.2.1".parse().unwrap()));
        let all: Ipv4Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let host: Ipv4Prefix = "10.77.1.10/32".parse().unwrap();
        assert!(host.contains("10.77.1.10".parse().unwrap()));
        assert!(!host.contains("10.77.1.11".parse().unwrap()));
        assert!(p.overlaps(&"10.77.0.0/16".parse().unwrap()));
        assert!(!p.overlaps(&"10.77.2.0/24".parse().unwrap()));
        for bad in ["10.77.1.0", "10.77.1.0/33", "10.77.1/24", "x/8"] {
            assert!(
                bad.parse::<Ipv4Prefix>().is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn matrix_file_parses_symmetric_oneway_and_default() {
        let m = WanMatrix::parse(
            "# comment\n\
             region a 10.1.0.0/16   # trailing comment\n\
             region b 10.2.0.0/16 10.3.0.0/16\n\
             region c 10.4.0.0/16\n\
             \n\
             ns na 10.1.0.5\n\
             ns nb 10.3.7.7\n\
             delay a b 20ms\n\
             delay a c 5 oneway\n\
             delay c a 7.5ms oneway\n\
             delay b b 1ms\n\
             default 100ms\n",
        )
        .unwrap();
        let (a, b, c) = (0, 1, 2);
        assert_eq!(m.region_id("b"), Some(b));
        assert_eq!(m.delay(a, b), ms(20));
        assert_eq!(m.delay(b, a), ms(20));
        assert_eq!(m.delay(a, c), ms(5));
        assert_eq!(m.delay(c, a), Duration::from_micros(7500));
        assert_eq!(m.delay(b, c), ms(100));
        assert_eq!(m.delay(c, b), ms(100));
        assert_eq!(m.delay(a, a), Duration::ZERO);
        assert_eq!(m.delay(b, b), ms(1));
        assert_eq!(m.namespaces()[1].region, b);
        assert_eq!(m.region_of("10.3.200.1".parse().unwrap()), Some(b));
        assert_eq!(m.region_of("10.5.0.1".parse().unwrap()), None);
        // Region b has an internal delay, so only a and c may bypass the router.
        assert_eq!(
            m.plan(),
            "ns na 10.1.0.5\nns nb 10.3.7.7\nlocal 10.1.0.0/16 10.1.0.0/16\n\
             local 10.4.0.0/16 10.4.0.0/16\n"
        );
    }

    #[test]
    fn matrix_errors_are_reported_with_lines() {
        let cases = [
            ("region a 10.1.0.0/16\nbogus x\n", "line 2"),
            ("region a\n", "line 1"),
            (
                "region a 10.1.0.0/16\ndelay a b 5\n",
                "unknown region \"b\"",
            ),
            (
                "region a 10.1.0.0/16\nregion b 10.2.0.0/16\n",
                "no delay given for a -> b",
            ),
            (
                "region a 10.1.0.0/16\nregion a 10.2.0.0/16\n",
                "defined twice",
            ),
            (
                "region a 10.1.0.0/16\nregion b 10.1.2.0/24\ndefault 1\n",
                "overlaps",
            ),
            ("region a 10.1.0.0/16\nns x 10.2.0.1\n", "in no region"),
            (
                "region a 10.1.0.0/16\nns x 10.1.0.1\nns y 10.1.0.1\n",
                "share address",
            ),
            (
                "region a 10.1.0.0/16\nns thisnameistoolong 10.1.0.1\n",
                "must be 1-12",
            ),
            (
                "region a 10.1.0.0/16\nregion b 10.2.0.0/16\ndelay a b 5\ndelay b a 6\n",
                "given as",
            ),
            ("", "no region"),
        ];
        for (text, want) in cases {
            let err = WanMatrix::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn builder_from_flags_matches_file() {
        let mut b = MatrixBuilder::new();
        b.region("x", vec!["10.9.1.0/24".parse().unwrap()], 0)
            .region("y", vec!["10.9.2.0/24".parse().unwrap()], 0)
            .delay("x", "y", ms(30), false, 0);
        let from_flags = b.build().unwrap();
        let from_file =
            WanMatrix::parse("region x 10.9.1.0/24\nregion y 10.9.2.0/24\ndelay y x 30ms\n")
                .unwrap();
        assert_eq!(from_flags, from_file);
    }

    #[test]
    fn preset_g1_has_the_published_delays() {
        let m = WanMatrix::preset("g1").unwrap();
        let id = |n: &str| m.region_id(n).unwrap();
        let (c, m1, m2, m3) = (id("client"), id("m1"), id("m2"), id("m3"));
        for (a, b, want) in [
            (c, m1, 75),
            (c, m2, 75),
            (c, m3, 50),
            (m1, m2, 50),
            (m1, m3, 50),
            (m2, m3, 50),
        ] {
            assert_eq!(m.delay(a, b), ms(want));
            assert_eq!(m.delay(b, a), ms(want));
        }
        let names: Vec<&str> = m.namespaces().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["xr1", "xr2", "xr3", "xc1"]);
        assert_eq!(m.namespaces()[3].region, c);
    }

    #[test]
    fn preset_g2_has_regions_with_local_clients() {
        let m = WanMatrix::preset("G2").unwrap();
        assert_eq!(m.delay(0, 1), ms(25));
        assert_eq!(m.delay(1, 2), ms(50));
        assert_eq!(m.delay(0, 2), ms(75));
        assert_eq!(m.delay(2, 0), ms(75));
        for i in 0..3 {
            assert_eq!(m.delay(i, i), Duration::ZERO);
            let members: Vec<&str> = m
                .namespaces()
                .iter()
                .filter(|n| n.region == i)
                .map(|n| n.name.as_str())
                .collect();
            assert_eq!(members, [format!("xr{}", i + 1), format!("xc{}", i + 1)]);
        }
        let lan = WanMatrix::preset("LAN").unwrap();
        assert_eq!(lan.regions().len(), 1);
        assert_eq!(lan.namespaces().len(), 6);
        assert!(lan.plan().ends_with("local 10.77.0.0/16 10.77.0.0/16\n"));
        assert!(WanMatrix::preset("G3").is_err());
    }

    #[test]
    fn table_lists_every_pair() {
        let t = WanMatrix::preset("G2").unwrap().table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[1].starts_with("r1") && lines[1].contains("25.0") && lines[1].contains("75.0")
        );
    }
}
