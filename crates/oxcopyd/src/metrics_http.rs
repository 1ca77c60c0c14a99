//! The Prometheus endpoint: `[server] metrics = "IP:port"` serves
//! `GET /metrics` with the text exposition (OpenMetrics 1.0, which
//! Prometheus scrapes natively) of every family the SCSI layer keeps (see
//! `oxcopy_scsi::metrics` for the list).
//!
//! A deliberately tiny HTTP/1.1 responder: one request per connection
//! (`Connection: close`), the request head bounded to 8 KiB and 5 seconds,
//! `GET`/`HEAD /metrics` answered, other paths 404, other methods 405.

use anyhow::{Context, Result};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

/// Largest request head we read.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client gets to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bind the metrics listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("binding the metrics endpoint {addr}"))
}

/// The exposition text of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::warn!("encoding metrics: {e}");
    }
    text
}

/// Serve until `shutdown` turns true.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let registry = registry.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &registry).await {
                            debug!(%peer, "metrics request: {e}");
                        }
                    });
                }
                Err(e) => {
                    debug!("metrics accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = async { let _ = shutdown.wait_for(|v| *v).await; } => return,
        }
    }
}

/// Read one request head and answer it.
async fn answer(mut stream: TcpStream, registry: &Registry) -> Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() > MAX_HEAD {
                break;
            }
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::time::timeout(HEAD_TIMEOUT, read).await.context("request head timed out")??;
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = if head.len() > MAX_HEAD {
        ("431 Request Header Fields Too Large", "text/plain", String::new())
    } else if method != "GET" && method != "HEAD" {
        ("405 Method Not Allowed", "text/plain", "only GET /metrics\n".to_string())
    } else if path != "/metrics" {
        ("404 Not Found", "text/plain", "try /metrics\n".to_string())
    } else {
        ("200 OK", CONTENT_TYPE, render(registry))
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        resp.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&resp).await?;
    stream.shutdown().await?;
    Ok(())
}

/// Fetch `http://addr/metrics` (tests and the benchmark): the body.
pub async fn scrape(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let text = String::from_utf8(resp).context("metrics response is not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("no header/body separator")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "metrics endpoint answered: {head}");
    Ok(body.to_string())
}

/// The value of one sample line `name{labels} value` in an exposition
/// (`labels` exactly as printed, e.g. `method="reflink"`); 0 when absent.
pub fn sample(text: &str, name: &str, labels: &str) -> u64 {
    let key = if labels.is_empty() { name.to_string() } else { format!("{name}{{{labels}}}") };
    text.lines()
        .filter_map(|l| l.strip_prefix(&key))
        .filter_map(|rest| rest.strip_prefix(' '))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .next()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_metrics_and_refuses_the_rest() {
        let m = oxcopy_scsi::Metrics::new();
        m.lun("iqn.t", 0).write(4096);
        let mut reg = Registry::default();
        m.register(&mut reg);
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, Arc::new(reg), rx));
        let body = scrape(addr).await.unwrap();
        assert_eq!(sample(&body, "oxcopy_lun_write_bytes_total", "target=\"iqn.t\",lun=\"0\""), 4096);
        assert_eq!(sample(&body, "oxcopy_copy_bytes_total", "method=\"reflink\""), 0);
        assert!(body.contains("# TYPE oxcopy_copy_bytes counter"));
        for (req, want) in [
            ("GET /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404"),
            ("POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405"),
            ("HEAD /metrics HTTP/1.0\r\n\r\n", "HTTP/1.1 200"),
        ] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            assert!(out.starts_with(want), "{req:?} -> {out:?}");
        }
        let _ = tx.send(true);
        task.await.unwrap();
    }
}
