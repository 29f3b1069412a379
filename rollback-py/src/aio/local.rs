//! Rust futures polled on the asyncio loop's own thread: the first poll happens in
//! the call, and each wake-up (from whatever thread the runtime's I/O driver or a
//! timer fires on) queues the task for the loop, which polls it again in its drain
//! callback. One thread wake per suspension; nothing waits for the GIL.

use pyo3::prelude::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use super::{CALLER_LOOP, Cancel, Cancelled, Completer, Finish, Ready, completer, finisher, running_loop, settle};
use crate::runtime::runtime;

type Polled = Pin<Box<dyn Future<Output = Finish> + Send>>;

/// A future driven by one loop.
pub(super) struct LocalTask {
    /// The future and the asyncio future it completes; `None` once settled or dropped.
    state: Mutex<Option<(Polled, Py<PyAny>)>>,
    /// Already in the loop's queue (a second wake-up adds nothing).
    queued: AtomicBool,
    completer: Arc<Completer>,
    caller: Arc<Py<PyAny>>,
}

/// Returns an awaitable for `fut`, polled on the calling thread's running loop:
/// for short calls (checks, probes) whose work is I/O. Cancelling it drops `fut`.
pub fn awaitable_on_loop<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = rollback_core::Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = running_loop(py)?;
    let completer = completer(&event_loop)?;
    let future = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
    let polled: Polled = Box::pin(async move { finisher(fut.await) });
    let task = Arc::new(LocalTask {
        state: Mutex::new(Some((polled, future.clone().unbind()))),
        queued: AtomicBool::new(false),
        completer,
        caller: Arc::new(event_loop.unbind()),
    });
    task.poll(py)?;
    future.call_method1(pyo3::intern!(py, "add_done_callback"), (Cancelled(Cancel::Drop(task)),))?;
    Ok(future)
}

impl LocalTask {
    /// Polls once on the loop thread; settles the asyncio future when ready.
    pub(super) fn poll(self: &Arc<Self>, py: Python<'_>) -> PyResult<()> {
        self.queued.store(false, Ordering::Release);
        let mut state = self.state.lock().map_err(|_| super::internal("asyncio task poisoned"))?;
        let Some((future, _)) = state.as_mut() else { return Ok(()) };
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let _runtime = runtime().enter();
        let polled = CALLER_LOOP.sync_scope(self.caller.clone(), || future.as_mut().poll(&mut cx));
        let Poll::Ready(finish) = polled else { return Ok(()) };
        let Some((_, target)) = state.take() else { return Ok(()) };
        drop(state);
        settle(py, &target, finish)
    }

    /// Drops the future (its asyncio future was cancelled).
    pub(super) fn drop_future(&self) {
        let _runtime = runtime().enter();
        if let Ok(mut state) = self.state.lock() {
            state.take();
        }
    }
}

impl Wake for LocalTask {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.completer.push(Ready::Poll(self.clone()));
        }
    }
}
