//! The writer task of a connection: sends the PDUs queued for it, batching
//! whatever is queued into one vectored write.

use bytes::{Buf, Bytes};
use oxcopy_iscsi::frame::EncodedPdu;
use std::io::IoSlice;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tracing::debug;

/// What the writer task sends.
pub(super) enum Out {
    /// Send this PDU.
    Pdu(EncodedPdu),
    /// Send these PDUs (a batch of answers made together).
    Pdus(Vec<EncodedPdu>),
    /// Send what is queued before this, then shut the socket down.
    Close,
}

/// Write PDUs with vectored I/O, batching whatever is queued.
/// A peer that accepts no bytes for `stall` is given up on (the connection
/// closes), so that responses cannot pile up behind it. This one timer stays
/// here rather than in the protocol core: only the pending write itself can
/// see that the socket accepts nothing, and the writer runs apart from the
/// connection task precisely so that reading never waits on it.
pub(super) async fn run(mut w: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Out>, stall: Duration) {
    let mut bufs: Vec<Bytes> = Vec::with_capacity(192);
    'outer: while let Some(first) = rx.recv().await {
        let mut close = false;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Out::Pdu(p) => {
                    for b in [p.head, p.data, p.tail] {
                        if !b.is_empty() {
                            bufs.push(b);
                        }
                    }
                }
                Out::Pdus(ps) => {
                    for p in ps {
                        for b in [p.head, p.data, p.tail] {
                            if !b.is_empty() {
                                bufs.push(b);
                            }
                        }
                    }
                }
                Out::Close => {
                    close = true;
                    break;
                }
            }
            if bufs.len() < 180 {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = write_all_vectored(&mut w, &mut bufs, stall).await {
            debug!("write failed: {e}");
            break 'outer;
        }
        if close {
            break;
        }
    }
    let _ = w.shutdown().await;
}

async fn write_all_vectored(w: &mut OwnedWriteHalf, bufs: &mut Vec<Bytes>, stall: Duration) -> std::io::Result<()> {
    let mut idx = 0;
    while idx < bufs.len() {
        let slices: Vec<IoSlice<'_>> = bufs[idx..].iter().take(64).map(|b| IoSlice::new(b)).collect();
        let mut n = tokio::time::timeout(stall, w.write_vectored(&slices))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "peer accepts no data"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && idx < bufs.len() {
            let len = bufs[idx].len();
            if n >= len {
                n -= len;
                idx += 1;
            } else {
                bufs[idx].advance(n);
                n = 0;
            }
        }
    }
    bufs.clear();
    Ok(())
}
