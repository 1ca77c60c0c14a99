//! The thread pool that executes SCSI commands (disk I/O stays off the
//! reactor).
//!
//! Why not `tokio::task::spawn_blocking`: its pool wakes one sleeping thread
//! for every job whenever one is idle, so a stream of short commands (a 4 KiB
//! read from the page cache takes a few µs, less than waking a thread) costs
//! two context switches per command, which on a small machine is most of the
//! CPU time. Here a *short* job wakes a thread only when no thread is awake
//! and looking for work; a thread that takes a job while more are queued
//! wakes one more (so slow I/O still fans out, one wake-up at a time, up to
//! the thread limit); a thread that finishes a job takes the next one
//! without sleeping. A *long* job (a big transfer) wakes a thread unless
//! every queued job already has an awake thread to take it: long jobs gain
//! more from running in parallel than they lose to a wake-up, and on a
//! loaded machine a woken thread may wait a while for a CPU.
//!
//! Idle threads exit after `keep_alive`; dropping the pool lets the threads
//! finish the queued jobs and exit.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A pool of at most `max_threads` threads running submitted closures.
pub(crate) struct IoPool {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    cv: Condvar,
    max_threads: usize,
    keep_alive: Duration,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Threads alive.
    threads: usize,
    /// Threads waiting on the condvar and not yet handed a wake-up permit.
    idle: usize,
    /// Wake-up permits not yet taken by a woken thread.
    permits: usize,
    /// Threads awake and not running a job (they will look at the queue
    /// before sleeping), including woken threads not yet running.
    searching: usize,
    shutdown: bool,
}

impl IoPool {
    pub(crate) fn new(max_threads: usize, keep_alive: Duration) -> IoPool {
        IoPool {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                cv: Condvar::new(),
                max_threads: max_threads.max(1),
                keep_alive,
            }),
        }
    }

    /// Run `f` on a pool thread; `long` says it is worth a thread of its
    /// own (see the module docs). A panic in `f` is caught and logged (the
    /// closure's captures are dropped, which is how waiters notice).
    pub(crate) fn spawn(&self, long: bool, f: impl FnOnce() + Send + 'static) {
        let mut st = self.inner.lock();
        st.jobs.push_back(Box::new(f));
        let wake = if long { st.jobs.len() > st.searching } else { st.searching == 0 };
        if wake {
            self.inner.wake_one(&mut st);
        }
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        self.inner.lock().shutdown = true;
        self.inner.cv.notify_all();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Get one more thread looking at the queue: wake a sleeper, or start a
    /// thread if below the limit (otherwise a busy thread will get to it).
    fn wake_one(self: &Arc<Self>, st: &mut State) {
        if st.idle > 0 {
            st.idle -= 1;
            st.permits += 1;
            st.searching += 1;
            self.cv.notify_one();
        } else if st.threads < self.max_threads {
            let inner = Arc::clone(self);
            let spawned = std::thread::Builder::new().name("oxcopyd-io".into()).spawn(move || inner.run());
            match spawned {
                Ok(_) => {
                    st.threads += 1;
                    st.searching += 1;
                }
                // Existing threads still drain the queue.
                Err(e) => tracing::warn!("cannot start an I/O thread: {e}"),
            }
        }
    }

    /// A worker thread (counted in `threads` and `searching` when started).
    fn run(self: Arc<Self>) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.jobs.pop_front() {
                st.searching -= 1;
                if !st.jobs.is_empty() && st.searching == 0 {
                    self.wake_one(&mut st);
                }
                drop(st);
                if catch_unwind(AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a SCSI command panicked; it gets no response");
                }
                st = self.lock();
                st.searching += 1;
                continue;
            }
            if st.shutdown {
                break;
            }
            st.searching -= 1;
            st.idle += 1;
            let (guard, wait) = self.cv.wait_timeout(st, self.keep_alive).unwrap_or_else(|p| p.into_inner());
            st = guard;
            if st.permits > 0 {
                // Woken on purpose: whoever woke us already moved us from
                // idle to searching.
                st.permits -= 1;
                continue;
            }
            // Spurious wake-up, time-out or shutdown: still counted idle.
            st.idle -= 1;
            if (wait.timed_out() && st.jobs.is_empty()) || (st.shutdown && st.jobs.is_empty()) {
                st.threads -= 1;
                return;
            }
            st.searching += 1;
        }
        st.searching -= 1;
        st.threads -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn runs_every_job_and_survives_panics() {
        let pool = IoPool::new(4, Duration::from_secs(10));
        let n = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        for i in 0..1000 {
            let (n, tx) = (n.clone(), tx.clone());
            pool.spawn(false, move || {
                if i == 500 {
                    panic!("test panic");
                }
                n.fetch_add(1, Ordering::SeqCst);
                tx.send(()).unwrap();
            });
        }
        for _ in 0..999 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(n.load(Ordering::SeqCst), 999);
        let st = pool.inner.lock();
        assert!(st.threads <= 4);
    }

    #[test]
    fn slow_jobs_fan_out_to_many_threads() {
        // 8 jobs that each block until all 8 run at once: only completes if
        // the pool grows to 8 threads (for short jobs, by the cascade: the
        // submits themselves woke one thread).
        for long in [false, true] {
            let pool = IoPool::new(8, Duration::from_secs(10));
            let barrier = Arc::new(std::sync::Barrier::new(8));
            let (tx, rx) = mpsc::channel();
            for _ in 0..8 {
                let (b, tx) = (barrier.clone(), tx.clone());
                pool.spawn(long, move || {
                    b.wait();
                    tx.send(()).unwrap();
                });
            }
            for _ in 0..8 {
                rx.recv_timeout(Duration::from_secs(10)).unwrap();
            }
        }
    }

    #[test]
    fn idle_threads_exit_and_come_back() {
        let pool = IoPool::new(2, Duration::from_millis(50));
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        pool.spawn(false, move || t.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.inner.lock().threads > 0 {
            assert!(Instant::now() < deadline, "idle thread did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
        pool.spawn(false, move || tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn drop_finishes_queued_jobs() {
        let pool = IoPool::new(1, Duration::from_secs(10));
        let (tx, rx) = mpsc::channel();
        for _ in 0..10 {
            let tx = tx.clone();
            pool.spawn(false, move || {
                std::thread::sleep(Duration::from_millis(2));
                tx.send(()).unwrap();
            });
        }
        drop(pool);
        for _ in 0..10 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
    }
}
