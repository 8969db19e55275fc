//! Classifying raw packets read from the TUN device by their IPv4 source and destination.

use std::{net::Ipv4Addr, time::Duration};

use super::matrix::{RegionId, WanMatrix};

/// The source and destination addresses of an IPv4 packet, or `None` if `pkt` is not a
/// well-formed IPv4 header (wrong version, header length below 20 bytes or past the buffer).
#[must_use]
pub fn ipv4_endpoints(pkt: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let first = *pkt.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || pkt.len() < header_len {
        return None;
    }
    let addr = |at: usize| Ipv4Addr::new(pkt[at], pkt[at + 1], pkt[at + 2], pkt[at + 3]);
    Some((addr(12), addr(16)))
}

/// What the router does with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hold it for this long; both ends are in known regions.
    Delay {
        /// Region of the source address.
        from: RegionId,
        /// Region of the destination address.
        to: RegionId,
        /// The one-way delay of that pair.
        delay: Duration,
    },
    /// IPv4, but an end is in no region: pass it on at once.
    Unknown,
    /// Not IPv4 (e.g. IPv6 neighbour discovery on the TUN): drop it.
    NotIpv4,
}

impl WanMatrix {
    /// Decides how long to hold `pkt`.
    #[must_use]
    pub fn classify(&self, pkt: &[u8]) -> Verdict {
        let Some((src, dst)) = ipv4_endpoints(pkt) else {
            return Verdict::NotIpv4;
        };
        match (self.region_of(src), self.region_of(dst)) {
            (Some(from), Some(to)) => Verdict::Delay {
                from,
                to,
                delay: self.delay(from, to),
            },
            _ => Verdict::Unknown,
        }
    }
}

/// Builds a minimal IPv4 packet (header plus `payload_len` zero bytes) for tests and examples.
#[must_use]
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize) -> Vec<u8> {
    let total = 20 + payload_len;
    let mut pkt = vec![0u8; total];
    pkt[0] = 0x45;
    let total16 = u16::try_from(total).unwrap_or(u16::MAX);
    pkt[2..4].copy_from_slice(&total16.to_be_bytes());
    pkt[8] = 64;
    pkt[9] = 17;
    pkt[12..16].copy_from_slice(&src.octets());
    pkt[16..20].copy_from_slice(&dst.octets());
    pkt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn endpoints_come_from_the_header() {
        let pkt = ipv4_packet(ip("10.77.1.10"), ip("10.77.4.20"), 8);
        assert_eq!(
            ipv4_endpoints(&pkt),
            Some((ip("10.77.1.10"), ip("10.77.4.20")))
        );
        // With options (IHL 6), the addresses stay at offsets 12 and 16.
        let mut opt = pkt.clone();
        opt[0] = 0x46;
        opt.extend_from_slice(&[0; 4]);
        assert_eq!(ipv4_endpoints(&opt), ipv4_endpoints(&pkt));
    }

    #[test]
    fn malformed_and_non_ipv4_are_rejected() {
        let pkt = ipv4_packet(ip("10.0.0.1"), ip("10.0.0.2"), 0);
        assert_eq!(ipv4_endpoints(&pkt[..19]), None);
        assert_eq!(ipv4_endpoints(&[]), None);
        let mut v6 = pkt.clone();
        v6[0] = 0x60;
        assert_eq!(ipv4_endpoints(&v6), None);
        let mut short_ihl = pkt.clone();
        short_ihl[0] = 0x44;
        assert_eq!(ipv4_endpoints(&short_ihl), None);
        let mut long_ihl = pkt;
        long_ihl[0] = 0x4f; // 60-byte header, buffer has 20
        assert_eq!(ipv4_endpoints(&long_ihl), None);
    }

    #[test]
    fn packets_get_the_delay_of_their_region_pair() {
        let m = WanMatrix::preset("G1").unwrap();
        let id = |n: &str| m.region_id(n).unwrap();
        let cases = [
            ("10.77.4.20", "10.77.1.10", id("client"), id("m1"), 75),
            ("10.77.1.10", "10.77.4.20", id("m1"), id("client"), 75),
            ("10.77.4.20", "10.77.3.10", id("client"), id("m3"), 50),
            ("10.77.2.10", "10.77.3.10", id("m2"), id("m3"), 50),
            ("10.77.2.10", "10.77.2.99", id("m2"), id("m2"), 0),
        ];
        for (src, dst, from, to, want) in cases {
            let pkt = ipv4_packet(ip(src), ip(dst), 100);
            assert_eq!(
                m.classify(&pkt),
                Verdict::Delay {
                    from,
                    to,
                    delay: Duration::from_millis(want)
                },
                "{src} -> {dst}"
            );
        }
        let stray = ipv4_packet(ip("10.77.1.10"), ip("192.0.2.1"), 0);
        assert_eq!(m.classify(&stray), Verdict::Unknown);
        let mut v6 = ipv4_packet(ip("10.77.1.10"), ip("10.77.2.10"), 40);
        v6[0] = 0x60;
        assert_eq!(m.classify(&v6), Verdict::NotIpv4);
    }
}
