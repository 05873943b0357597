//! Choosing a backend for a new connection or UDP session, among the healthy
//! ones. Pure: the listener supplies the healthy set and its round-robin turn.
//!
//! `source-hash` (and `maglev-hash`, which shares it) uses rendezvous hashing
//! of the client IP with each backend's IP: the same client lands on the same
//! backend while that backend stays healthy, and a backend leaving or joining
//! moves only the clients that hashed to it (Maglev's promise, without its
//! lookup table). The hash is FNV-1a, fixed, so the choice does not change
//! between zone restarts.

use std::net::IpAddr;

use super::plan::{Backend, Pick};

/// The backend for a new flow from `client`, or `None` when none is healthy.
/// `turn` is the listener's round-robin counter; it advances on every pick.
pub fn pick(how: Pick, healthy: &[Backend], client: IpAddr, turn: &mut usize) -> Option<Backend> {
    if healthy.is_empty() {
        return None;
    }
    match how {
        Pick::RoundRobin => {
            let chosen = healthy[*turn % healthy.len()];
            *turn = turn.wrapping_add(1);
            Some(chosen)
        }
        Pick::SourceHash => healthy.iter().copied().max_by_key(|b| (weight(client, b), b.ip)),
    }
}

/// The rendezvous weight of `backend` for `client`.
fn weight(client: IpAddr, backend: &Backend) -> u64 {
    let client = match client {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    fnv1a(client.iter().chain(backend.ip.octets().iter()))
}

fn fnv1a<'a>(bytes: impl Iterator<Item = &'a u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;
    use uuid::Uuid;

    fn backends(n: u8) -> Vec<Backend> {
        (1..=n).map(|i| Backend { instance: Uuid::new_v4(), ip: Ipv4Addr::new(127, 64, 0, i) }).collect()
    }

    fn client(i: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 1, 0, i))
    }

    #[test]
    fn round_robin_takes_each_healthy_backend_in_turn() {
        let all = backends(3);
        let mut turn = 0;
        let got: Vec<Ipv4Addr> =
            (0..6).map(|_| pick(Pick::RoundRobin, &all, client(1), &mut turn).unwrap().ip).collect();
        assert_eq!(got[..3], got[3..]);
        assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 3);
        assert_eq!(pick(Pick::RoundRobin, &[], client(1), &mut turn), None);
    }

    #[test]
    fn source_hash_keeps_a_client_and_moves_only_the_clients_of_a_lost_backend() {
        let all = backends(4);
        let mut turn = 0;
        let first: Vec<Backend> =
            (0..64).map(|i| pick(Pick::SourceHash, &all, client(i), &mut turn).unwrap()).collect();
        for (i, b) in first.iter().enumerate() {
            assert_eq!(pick(Pick::SourceHash, &all, client(i as u8), &mut turn), Some(*b), "stable");
        }
        assert_eq!(first.iter().map(|b| b.ip).collect::<BTreeSet<_>>().len(), 4, "every backend gets clients");
        let lost = all[0];
        let rest = &all[1..];
        for (i, b) in first.iter().enumerate() {
            let now = pick(Pick::SourceHash, rest, client(i as u8), &mut turn).unwrap();
            if *b != lost {
                assert_eq!(now, *b, "client {i} did not hash to the lost backend and stays");
            }
        }
    }
}
