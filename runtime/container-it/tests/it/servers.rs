//! A TCP relay on the Docker host gateway in front of the mock LLM, which binds
//! loopback only. (The event sink and the integration's API are
//! `corral_testkit::recorder::Recorder`s bound to the gateway address directly.)

use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};

/// Forwards every TCP connection accepted on `ip:<port>` to `to`.
pub struct Relay {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    pub async fn start(ip: IpAddr, to: SocketAddr) -> Relay {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { port, task }
    }
}
