//! Poll before sleeping (`server.poll_before_sleep`), shared by the iSCSI
//! and NVMe/TCP connection tasks: a connection whose client sends one
//! command at a time waits for the next one awake, briefly, instead of in
//! the kernel.

use bytes::BytesMut;
use std::time::{Duration, Instant};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

/// A command arriving within this long of the connection going idle makes
/// it "hot" (worth polling for).
pub(super) const HOT_GAP: Duration = Duration::from_micros(200);

/// Poll before sleeping (`server.poll_before_sleep`): a connection whose
/// initiator sends its commands one at a time, each within [`HOT_GAP`] of
/// the last answer (queue depth 1: a database log, a VM's synchronous
/// I/O), waits for the next one
/// for up to `budget` while awake — yielding to the other tasks of its thread, the
/// writer sending the answer first — instead of sleeping in epoll and
/// paying a wake-up (on a VM, an inter-processor interrupt and a
/// wake from idle) per command. A poll that finds nothing turns polling
/// off until a command again arrives soon after an answer, so an idle or
/// slow connection costs nothing; commands arriving several at a time
/// (queue depth > 1) turn it off too: such a connection rarely sleeps, and
/// polling would take the CPU its initiator needs.
pub(super) struct PollBeforeSleep {
    pub(super) budget: Duration,
    /// When the connection last went idle (nothing left to read).
    idle_since: Option<Instant>,
    hot: bool,
}

impl PollBeforeSleep {
    pub(super) fn new(budget: Duration) -> Self {
        PollBeforeSleep { budget, idle_since: None, hot: false }
    }
    /// Bytes holding `pdus` PDUs arrived after a sleep, at `now`.
    pub(super) fn woken(&mut self, now: Instant, pdus: usize) {
        self.hot =
            !self.budget.is_zero() && pdus == 1 && self.idle_since.is_some_and(|t| now.duration_since(t) <= HOT_GAP);
    }
    pub(super) fn hot(&self) -> bool {
        self.hot
    }
    /// A poll found nothing: sleep from now on, until a quick command again.
    pub(super) fn missed(&mut self) {
        self.hot = false;
    }
    pub(super) fn idle_from(&mut self, now: Instant) {
        self.idle_since = Some(now);
    }
}

/// What a poll found.
pub(super) enum Polled<D> {
    Bytes,
    Done(D),
    Nothing,
    Closed,
}

/// Poll (awake, yielding between tries) for bytes or a command result, for
/// at most `budget`.
pub(super) async fn poll_next<D>(
    rd: &OwnedReadHalf,
    buf: &mut BytesMut,
    done_rx: &mut mpsc::UnboundedReceiver<D>,
    budget: Duration,
) -> Polled<D> {
    let deadline = Instant::now() + budget;
    // Bounded in time, and in count (whatever the clock does).
    for _ in 0..100_000 {
        tokio::task::yield_now().await;
        match rd.try_read_buf(buf) {
            Ok(0) => return Polled::Closed,
            Ok(_) => return Polled::Bytes,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return Polled::Closed,
        }
        if let Ok(done) = done_rx.try_recv() {
            return Polled::Done(done);
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Polled::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polling starts when a command comes soon after the connection went
    /// idle, stops at the first poll that finds nothing, and never starts
    /// with a zero budget or after a long gap.
    #[test]
    fn poll_before_sleep_follows_the_gaps() {
        let t = Instant::now();
        let us = |n: u64| t + Duration::from_micros(n);
        let mut p = PollBeforeSleep::new(Duration::from_micros(50));
        p.woken(us(0), 1);
        assert!(!p.hot(), "nothing to measure a gap from yet");
        p.idle_from(us(10));
        p.woken(us(60), 1);
        assert!(p.hot(), "50 µs gap");
        p.idle_from(us(70));
        p.woken(us(80), 3);
        assert!(!p.hot(), "several commands at once");
        p.idle_from(us(90));
        p.woken(us(95), 1);
        assert!(p.hot());
        p.missed();
        assert!(!p.hot());
        p.idle_from(us(100));
        p.woken(us(100 + HOT_GAP.as_micros() as u64 + 1), 1);
        assert!(!p.hot(), "a gap over HOT_GAP");
        p.idle_from(us(1000));
        p.woken(us(1001), 1);
        assert!(p.hot());
        let mut off = PollBeforeSleep::new(Duration::ZERO);
        off.idle_from(us(0));
        off.woken(us(1), 1);
        assert!(!off.hot(), "budget 0: off");
    }
}
