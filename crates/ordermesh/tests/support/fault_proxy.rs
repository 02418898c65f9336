//! A TCP proxy in front of an upstream that can make it hang or crawl.

use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Bytes flow both ways.
    Pass,
    /// Requests are swallowed: connections are accepted and read, never answered.
    Hang,
    /// Each request reaches the upstream only after this delay.
    Slow(Duration),
}

/// A TCP proxy in front of one upstream whose behaviour the test switches at will, for
/// connections already open as well as new ones.
pub struct FaultProxy {
    pub url: String,
    fault: Arc<RwLock<Fault>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let target = upstream.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fault = Arc::new(RwLock::new(Fault::Pass));
        let shared = fault.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (fault, target) = (shared.clone(), target.clone());
                tokio::spawn(async move {
                    let _ = relay(client, &target, fault).await;
                });
            }
        });
        FaultProxy { url, fault, task }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.write().unwrap() = fault;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: tokio::net::TcpStream, target: &str, fault: Arc<RwLock<Fault>>) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = tokio::net::TcpStream::connect(target).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let requests = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return upstream_write.shutdown().await;
            }
            let now = *fault.read().unwrap();
            match now {
                Fault::Pass => {}
                Fault::Hang => continue,
                Fault::Slow(d) => tokio::time::sleep(d).await,
            }
            upstream_write.write_all(&buf[..n]).await?;
        }
    };
    let answers = tokio::io::copy(&mut upstream_read, &mut client_write);
    tokio::select! {
        r = requests => r,
        r = answers => r.map(|_| ()),
    }
}
