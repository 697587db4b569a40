//! A network path that tests can cut: a TCP forwarder on a loopback port in front of a
//! server, which [`Link::cut`] turns into an outage as clients see one when the server
//! restarts (open connections closed, new ones closed as soon as they are accepted)
//! and [`Link::restore`] ends.
//!
//! The local AWS emulator keeps its queues and objects in memory, so restarting its
//! process would also erase what it had accepted, which SQS and S3 never do. Cutting
//! the path in front of it gives the clients (the functions, the event pump) the outage
//! without that loss.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A cuttable TCP path to `target`; stops when dropped.
#[derive(Debug)]
pub struct Link {
    addr: SocketAddr,
    target: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    up: AtomicBool,
    /// Bumped on every cut: open connections end when it changes.
    cuts: watch::Sender<u64>,
    /// Connections closed at once because the link was cut.
    refused: AtomicU64,
    forwarded: AtomicU64,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
        // Ends the connections still open.
        self.state.cuts.send_modify(|n| *n += 1);
    }
}

impl Link {
    /// Starts forwarding a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            up: AtomicBool::new(true),
            cuts: watch::channel(0).0,
            refused: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept(listener, target, state.clone()));
        Ok(Link {
            addr,
            target,
            state,
            task,
        })
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Closes every open connection and every new one until [`Link::restore`].
    pub fn cut(&self) {
        self.state.up.store(false, Ordering::SeqCst);
        self.state.cuts.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.state.up.store(true, Ordering::SeqCst);
    }

    pub fn is_up(&self) -> bool {
        self.state.up.load(Ordering::SeqCst)
    }

    /// Connections closed on arrival because the link was cut.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }

    /// Connections forwarded.
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::Relaxed)
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, state: Arc<State>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if !state.up.load(Ordering::SeqCst) {
            state.refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        state.forwarded.fetch_add(1, Ordering::Relaxed);
        let cuts = state.cuts.subscribe();
        tokio::spawn(forward(client, target, cuts));
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr, mut cuts: watch::Receiver<u64>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cuts.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn a_cut_closes_open_connections_and_refuses_new_ones_until_restored() {
        let link = Link::start(echo_server().await).await.expect("link");
        let mut open = TcpStream::connect(link.addr()).await.expect("connect");
        assert_eq!(round_trip(&mut open).await.expect("through"), b"ping");

        link.cut();
        assert!(!link.is_up());
        assert!(
            round_trip(&mut open).await.is_err(),
            "open connection ended"
        );
        let mut new = TcpStream::connect(link.addr()).await.expect("accepted");
        assert!(round_trip(&mut new).await.is_err(), "new connection closed");
        assert_eq!(link.refused(), 1);

        link.restore();
        let mut after = TcpStream::connect(link.addr()).await.expect("connect");
        assert_eq!(round_trip(&mut after).await.expect("through"), b"ping");
        assert_eq!(link.forwarded(), 2);
    }
}
