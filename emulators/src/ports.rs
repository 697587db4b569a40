//! Small process and network helpers for the local stack and the tests.

use std::net::TcpListener;

/// A free TCP port on loopback (the OS picks it; there is a short window in which
/// another process could take it, which is acceptable on a developer machine).
pub fn free_port() -> std::io::Result<u16> {
    TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}
