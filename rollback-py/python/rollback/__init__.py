"""rollback: journaled, verified, resumable production rollbacks.

The Rust engine does the work; this package lets deploy scripts build plans from
dicts or TOML, dry-run, run, resume and approve them, read the history, decide
with ``should_rollback``, verify, and plug Python targets, verifiers and
notifiers into plans the Rust engine runs.

Blocking methods release the GIL while Rust works; ``AsyncEngine`` and the
``*_async`` methods return awaitables for asyncio.
"""

from ._rollback import (
    BACKENDS,
    AsyncEngine,
    BackendError,
    Cancel,
    RunCancelledError,
    ConflictError,
    CorruptError,
    Decision,
    DivergedError,
    DryRun,
    Engine,
    InternalError,
    AlreadyDoneError,
    InvalidInputError,
    RunStateError,
    Secrets,
    LockedError,
    NotFoundError,
    PermissionDeniedError,
    Plan,
    Report,
    RollbackError,
    Target,
    RollbackTimeoutError,
    UnsupportedError,
    VerificationFailedError,
    Verifier,
    __version__,
    gather_signals,
    kinds,
    progress,
    should_rollback,
)
from . import verify
from .protocols import NotifierProtocol, SnapshotProtocol, TargetProtocol, VerifierProtocol

__all__ = [
    "BACKENDS",
    "AsyncEngine",
    "BackendError",
    "Cancel",
    "RunCancelledError",
    "ConflictError",
    "CorruptError",
    "Decision",
    "DivergedError",
    "DryRun",
    "Engine",
    "InternalError",
    "AlreadyDoneError",
    "InvalidInputError",
    "RunStateError",
    "Secrets",
    "LockedError",
    "NotFoundError",
    "NotifierProtocol",
    "PermissionDeniedError",
    "Plan",
    "Report",
    "RollbackError",
    "Target",
    "SnapshotProtocol",
    "TargetProtocol",
    "RollbackTimeoutError",
    "UnsupportedError",
    "VerificationFailedError",
    "Verifier",
    "VerifierProtocol",
    "__version__",
    "gather_signals",
    "kinds",
    "progress",
    "should_rollback",
    "verify",
]
