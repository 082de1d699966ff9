//! A TCP proxy between the shipper and the broker that can fail on command: pass bytes through,
//! cut every live connection, hold everything (a blackhole), or delay every chunk (a slow link).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything at once.
    Pass,
    /// Keep sockets open but forward nothing either way (bytes read are held, not lost).
    Blackhole,
    /// Wait this long before forwarding each chunk.
    Slow(Duration),
}

pub struct Proxy {
    runtime: Option<tokio::runtime::Runtime>,
    pub port: u16,
    mode: watch::Sender<Mode>,
    /// Bumped by `cut`: every connection accepted before it is closed.
    epoch: watch::Sender<u64>,
    accepted: watch::Receiver<u64>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let (epoch, epoch_rx) = watch::channel(0u64);
        let (accepted_tx, accepted) = watch::channel(0u64);
        runtime.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                accepted_tx.send_modify(|n| *n += 1);
                let (mode, mut epoch) = (mode_rx.clone(), epoch_rx.clone());
                epoch.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    // Whichever ends first (a side closed, or a cut) drops both sockets.
                    tokio::select! {
                        _ = pump(client_read, server_write, mode.clone()) => {}
                        _ = pump(server_read, client_write, mode) => {}
                        _ = epoch.changed() => {}
                    }
                });
            }
        });
        Proxy {
            runtime: Some(runtime),
            port,
            mode,
            epoch,
            accepted,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        eprintln!("proxy: {mode:?}");
        self.mode.send_replace(mode);
    }

    /// Closes every live connection now; new ones are still accepted.
    pub fn cut(&self) {
        eprintln!("proxy: cut");
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        *self.accepted.borrow()
    }

    /// `amqp://guest:guest@127.0.0.1:<proxy port>/%2f` with extra query parameters.
    pub fn uri(&self, query: &str) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f?{query}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Copies `from` → `to`, honouring the mode before every read and before every write.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if hold(&mut mode).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Ok(current) = hold(&mut mode).await else {
            return;
        };
        if let Mode::Slow(delay) = current {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits while the mode is `Blackhole`; the mode then in force.
async fn hold(mode: &mut watch::Receiver<Mode>) -> Result<Mode, watch::error::RecvError> {
    mode.wait_for(|m| *m != Mode::Blackhole).await.map(|m| *m)
}
