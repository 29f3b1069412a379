//! Rust futures awaited from asyncio, at the cost of a callback.
//!
//! Each call creates one `asyncio.Future` on the caller's loop and spawns the Rust
//! future on the runtime. Completions go into one queue per loop; the first one of a
//! batch writes a byte to a socket pair the loop watches (`loop.add_reader`), and
//! the loop thread drains the whole queue in one callback, setting every result. A
//! runtime thread never waits for the GIL and nothing runs on a blocking thread.
//!
//! Two ways to drive the Rust side: [`awaitable`] spawns it on the runtime (a run,
//! whose journal writes must not stall the loop); [`awaitable_on_loop`] polls it on
//! the loop's own thread, woken through the same queue, so a suspension costs one
//! thread wake instead of two (a check, a probe).
//!
//! While the future runs, [`caller_loop`] is the caller's loop, so Python `async
//! def` methods the engine calls run there.

mod local;
pub use local::awaitable_on_loop;

use pyo3::BoundObject;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::errors::IntoPy;
use crate::runtime::runtime;

/// Builds the Python result on the loop thread (with the GIL).
type Finish = Box<dyn for<'py> FnOnce(Python<'py>) -> PyResult<Py<PyAny>> + Send>;

tokio::task_local! {
    static CALLER_LOOP: Arc<Py<PyAny>>;
}

/// The event loop of the asyncio caller whose call this task is running, if any.
pub fn caller_loop() -> Option<Arc<Py<PyAny>>> {
    CALLER_LOOP.try_with(Arc::clone).ok()
}

/// What cancelling the asyncio future does to the Rust side.
pub enum OnCancel {
    /// Drops the Rust future (reads, checks: nothing is left half-done).
    Abort,
    /// Asks a run to stop at its next step boundary, where it is journaled cancelled.
    Request(rollback_core::CancelHandle),
}

/// Returns an awaitable for `fut`, completed on the calling thread's running loop.
pub fn awaitable<'py, T, F>(py: Python<'py>, on_cancel: OnCancel, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: std::future::Future<Output = rollback_core::Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = running_loop(py)?;
    let completer = completer(&event_loop)?;
    let future = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
    let target = future.clone().unbind();
    let caller = Arc::new(event_loop.unbind());
    let task = runtime().spawn(CALLER_LOOP.scope(caller, async move {
        let outcome = fut.await;
        completer.complete(target, finisher(outcome));
    }));
    let on_cancel = Cancelled(match on_cancel {
        OnCancel::Abort => Cancel::Abort(task.abort_handle()),
        OnCancel::Request(handle) => Cancel::Request(handle),
    });
    future.call_method1(pyo3::intern!(py, "add_done_callback"), (on_cancel,))?;
    Ok(future)
}

fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    GET_RUNNING_LOOP.import(py, "asyncio", "get_running_loop")?.call0()
}

/// The done callback of every future: passes a cancellation on to the Rust side.
#[pyclass(frozen)]
struct Cancelled(Cancel);

enum Cancel {
    Abort(tokio::task::AbortHandle),
    Request(rollback_core::CancelHandle),
    Drop(Arc<local::LocalTask>),
}

#[pymethods]
impl Cancelled {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0(pyo3::intern!(future.py(), "cancelled"))?.is_truthy()? {
            match &self.0 {
                Cancel::Abort(task) => task.abort(),
                Cancel::Request(handle) => handle.cancel(),
                Cancel::Drop(task) => task.drop_future(),
            }
        }
        Ok(())
    }
}

/// What the loop thread does with a queue entry.
enum Ready {
    /// Set this result.
    Result(Py<PyAny>, Finish),
    /// Poll this task again (its waker fired).
    Poll(Arc<local::LocalTask>),
}

/// One loop's completion queue and its wake-up socket pair.
struct Completer {
    queue: Mutex<Vec<Ready>>,
    /// A wake-up byte is in flight (the loop has not drained since).
    woken: AtomicBool,
    wake: UnixStream,
    woken_by: UnixStream,
}

impl Completer {
    /// Queues a result; the first of a batch wakes the loop (no GIL needed).
    fn complete(&self, future: Py<PyAny>, finish: Finish) {
        self.push(Ready::Result(future, finish));
    }

    /// Queues an entry; the first of a batch wakes the loop (no GIL needed).
    fn push(&self, ready: Ready) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.push(ready);
        }
        if !self.woken.swap(true, Ordering::AcqRel) {
            // A full socket buffer means a wake-up is already pending: nothing lost.
            let _ = (&self.wake).write(&[1]);
        }
    }

    /// On the loop thread: empties the socket, then sets every queued result.
    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        let mut bytes = [0u8; 64];
        while matches!((&self.woken_by).read(&mut bytes), Ok(n) if n > 0) {}
        // Cleared before taking the queue: a result queued after this wakes again.
        self.woken.store(false, Ordering::Release);
        let batch = self.queue.lock().map(|mut queue| std::mem::take(&mut *queue)).unwrap_or_default();
        for ready in batch {
            match ready {
                Ready::Result(future, finish) => settle(py, &future, finish)?,
                Ready::Poll(task) => task.poll(py)?,
            }
        }
        Ok(())
    }
}

/// Sets `future`'s result (or exception) unless it was cancelled meanwhile.
fn settle(py: Python<'_>, future: &Py<PyAny>, finish: Finish) -> PyResult<()> {
    let future = future.bind(py);
    if future.call_method0(pyo3::intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    match finish(py) {
        Ok(value) => future.call_method1(pyo3::intern!(py, "set_result"), (value,))?,
        Err(err) => future.call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),))?,
    };
    Ok(())
}

/// Builds the [`Finish`] of a future's outcome.
fn finisher<T>(outcome: rollback_core::Result<T>) -> Finish
where
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    Box::new(move |py| {
        let value = outcome.py_err()?;
        Ok(value.into_pyobject(py).map_err(Into::into)?.into_any().into_bound().unbind())
    })
}

/// The reader callback registered on a loop.
#[pyclass(frozen)]
struct Drain(Arc<Completer>);

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        self.0.drain(py)
    }
}

/// Loops seen so far with their completers; closed loops are dropped as new ones
/// come (their reader went with their selector).
static COMPLETERS: Mutex<Vec<(Py<PyAny>, Arc<Completer>)>> = Mutex::new(Vec::new());

fn completer(event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Completer>> {
    let found = known(|known| known.iter().find(|(l, _)| l.as_ptr() == event_loop.as_ptr()).map(|(_, c)| c.clone()))?;
    if let Some(completer) = found {
        return Ok(completer);
    }
    // A new loop. Python is called with the list unlocked (it may release the GIL).
    let py = event_loop.py();
    let loops = known(|known| known.iter().map(|(l, _)| l.clone_ref(py)).collect::<Vec<_>>())?;
    let mut closed = Vec::new();
    for l in loops {
        if l.bind(py).call_method0("is_closed")?.is_truthy()? {
            closed.push(l.as_ptr());
        }
    }
    let (wake, woken_by) = UnixStream::pair().map_err(|e| internal(format!("socketpair: {e}")))?;
    for end in [&wake, &woken_by] {
        end.set_nonblocking(true).map_err(|e| internal(format!("socketpair: {e}")))?;
    }
    let completer =
        Arc::new(Completer { queue: Mutex::new(Vec::new()), woken: AtomicBool::new(false), wake, woken_by });
    event_loop.call_method1("add_reader", (completer.woken_by.as_raw_fd(), Drain(completer.clone())))?;
    known(|known| {
        known.retain(|(l, _)| !closed.contains(&l.as_ptr()));
        known.push((event_loop.clone().unbind(), completer.clone()));
    })?;
    Ok(completer)
}

fn known<R>(f: impl FnOnce(&mut Vec<(Py<PyAny>, Arc<Completer>)>) -> R) -> PyResult<R> {
    let mut known = COMPLETERS.lock().map_err(|_| internal("asyncio completers poisoned"))?;
    Ok(f(&mut known))
}

fn internal(message: impl Into<String>) -> PyErr {
    crate::errors::to_pyerr(rollback_core::Error::internal(message))
}
