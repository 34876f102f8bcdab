//! The daemon's one cap on parse workers that ingest and previews share: `ingest.workers`
//! places, taken first come, first served.
//!
//! An ingest worker holds a place for each file it handles; a `show --preview` holds one for
//! its row stream. So however many users ask for previews, no more than `ingest.workers`
//! of these parse workers run at once, and previews wait their turn behind files (and files
//! behind previews) instead of being refused; refusing is the per-uid cap's job
//! (`server.previews_per_uid`). Embedding jobs' row streams are paced by the queue's own
//! `embedding.max_concurrent_jobs`, not here. This module only counts; it never starts a
//! worker.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The shared places; clones share them.
#[derive(Debug, Clone)]
pub struct ParseSlots(Arc<Semaphore>);

/// A place held; dropping it frees the place for the next in line.
#[derive(Debug)]
pub struct ParseSlot(#[allow(dead_code)] OwnedSemaphorePermit);

impl ParseSlots {
    /// `places` places (at least one).
    pub fn new(places: usize) -> Self {
        Self(Arc::new(Semaphore::new(places.max(1))))
    }

    /// A place now, if one is free.
    pub fn try_take(&self) -> Option<ParseSlot> {
        Arc::clone(&self.0).try_acquire_owned().ok().map(ParseSlot)
    }

    /// Wait (async) for a place, in line with every other waiter.
    pub async fn take(&self) -> ParseSlot {
        let permit = Arc::clone(&self.0)
            .acquire_owned()
            .await
            .expect("the parse-worker semaphore is never closed");
        ParseSlot(permit)
    }

    /// Wait for a place on a plain thread (the ingest workers), in the same line as
    /// [`Self::take`].
    pub fn take_blocking(&self) -> ParseSlot {
        block_on(self.take())
    }

    /// Places free right now.
    pub fn free(&self) -> usize {
        self.0.available_permits()
    }
}

/// Run `future` to completion on this thread, parking while it waits. Only for futures that
/// need no runtime (a semaphore's acquire): the ingest workers are plain threads.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_thread_waits_for_a_place_a_preview_holds() {
        let slots = ParseSlots::new(1);
        let held = slots.try_take().expect("one place");
        assert!(slots.try_take().is_none());
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let slots = slots.clone();
            std::thread::spawn(move || {
                let _slot = slots.take_blocking();
                tx.send(()).unwrap();
            })
        };
        // The thread cannot get the place while it is held.
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        drop(held);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the waiter got the place once it was freed");
        waiter.join().unwrap();
        assert_eq!(slots.free(), 1);
    }

    #[tokio::test]
    async fn async_and_blocking_waiters_share_one_line() {
        let slots = ParseSlots::new(1);
        let held = slots.take_blocking();
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        let slot = waiting.await.unwrap();
        assert_eq!(slots.free(), 0);
        drop(slot);
        assert_eq!(slots.free(), 1);
    }
}
