//! Address allocation: every instance and NLB gets addresses no other one has
//! ever had, all on loopback so the zone's data plane can bind them.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The IPv4 address number `n` stands for: 127.64.0.0/10, skipping the
/// `.0` and `.255` host bytes so no address looks like a network or broadcast.
pub fn ipv4(n: u32) -> Ipv4Addr {
    // 254 usable host bytes per /24.
    let (block, host) = (n / 254, n % 254 + 1);
    let b = 64 + ((block >> 8) & 0x3f) as u8;
    Ipv4Addr::new(127, b, (block & 0xff) as u8, host as u8)
}

/// The IPv6 address number `n` stands for, in fd00::/8 (unique local).
pub fn ipv6(n: u32) -> Ipv6Addr {
    let m = u64::from(n) + 1;
    Ipv6Addr::new(0xfd5c, 0xa1e0, 0, 0, 0, (m >> 32) as u16, (m >> 16) as u16, m as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn addresses_are_unique_loopback_and_never_localhost() {
        let mut seen = HashSet::new();
        for n in 0..100_000 {
            let ip = ipv4(n);
            assert!(ip.is_loopback());
            assert_ne!(ip, Ipv4Addr::LOCALHOST);
            assert!(ip.octets()[3] != 0 && ip.octets()[3] != 255);
            assert!(seen.insert(ip), "{ip} handed out twice");
        }
        assert_eq!(ipv4(0), Ipv4Addr::new(127, 64, 0, 1));
        assert_eq!(ipv6(0).segments()[0], 0xfd5c);
    }
}
