//! A TCP proxy between the ledger and Redis that passes, delays, stalls (blackholes) or
//! drops connections on command: what a bad network does.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the network does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes flow.
    Pass,
    /// Every chunk waits this long before it is forwarded.
    Delay(Duration),
    /// Nothing flows and nothing is refused: connections hang (a partition; TCP delivers
    /// what was sent once it heals).
    Blackhole,
    /// Every connection is closed and new ones are refused.
    Drop,
}

/// The proxy; it runs until the test ends.
pub struct Proxy {
    /// `redis://127.0.0.1:<proxy port>/`.
    pub url: String,
    mode: Arc<watch::Sender<Mode>>,
}

impl Proxy {
    /// A proxy in front of Redis on 127.0.0.1:`upstream`.
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "redis://127.0.0.1:{}/",
            listener.local_addr().unwrap().port()
        );
        let (tx, rx) = watch::channel(Mode::Pass);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *rx.borrow() == Mode::Drop {
                    drop(client);
                    continue;
                }
                let rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = tokio::spawn(pump(cr, sw, rx.clone()));
                    let down = tokio::spawn(pump(sr, cw, rx));
                    let _ = tokio::join!(up, down);
                });
            }
        });
        Self {
            url,
            mode: Arc::new(tx),
        }
    }

    /// Switches what the network does.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Copies `from` to `to` as the mode allows, until either side closes or the mode drops.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Stalled: read nothing (TCP keeps the bytes) until the mode changes.
        while *mode.borrow() == Mode::Blackhole {
            if mode.changed().await.is_err() {
                return;
            }
        }
        if *mode.borrow() == Mode::Drop {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let current = *mode.borrow();
        match current {
            Mode::Drop => return,
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Blackhole => {
                // What was read before the stall is delivered after it, as TCP would.
                while *mode.borrow() == Mode::Blackhole {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
                if *mode.borrow() == Mode::Drop {
                    return;
                }
            }
            Mode::Pass => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
