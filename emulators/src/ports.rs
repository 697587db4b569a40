//! Small process and network helpers for the local stack and the tests.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;

/// Ports handed out by [`free_port`]: below the ephemeral ranges of Linux (32768-60999)
/// and macOS (49152-65535), from which the kernel picks the source port of every outgoing
/// connection. A port the OS picked with `bind(0)` comes from that range, so a client
/// connection anywhere on the machine could take it between the check and the server's
/// own bind ("Address already in use" in a parallel test run).
const RANGE: std::ops::Range<u16> = 20_000..32_768;

/// A free TCP port on loopback, chosen at random in `RANGE` and checked by binding it.
/// Another process could still take it before its server binds it, but only by asking for
/// that very port.
pub fn free_port() -> std::io::Result<u16> {
    let span = u64::from(RANGE.end - RANGE.start);
    let seeds = RandomState::new();
    for attempt in 0u64..200 {
        let mut hasher = seeds.build_hasher();
        hasher.write_u64(attempt);
        let port = RANGE.start + (hasher.finish() % span) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().map(|a| a.port());
        }
    }
    // Nearly every port of the range is taken: let the OS pick one.
    TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_lie_below_the_ephemeral_range_and_can_be_bound() {
        let ports: Vec<u16> = (0..20).map(|_| free_port().expect("a free port")).collect();
        for &port in &ports {
            assert!(RANGE.contains(&port), "{port}");
            TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        }
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 15, "random ports, not one: {ports:?}");
    }
}
