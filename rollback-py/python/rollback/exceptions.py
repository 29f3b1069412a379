"""Every exception ``rollback`` raises, one class per error kind, all subclasses of
:class:`RollbackError` (with ``kind``, ``message``, ``retryable``, ``operation`` and
``context``). None shadows a built-in or an ``asyncio`` name: a deadline is
:class:`RollbackTimeoutError`, a cancelled run :class:`RunCancelledError`.

    from rollback.exceptions import LockedError
"""

from ._rollback import (
    AlreadyDoneError,
    BackendError,
    ConflictError,
    CorruptError,
    DivergedError,
    InternalError,
    InvalidInputError,
    RunStateError,
    LockedError,
    NotFoundError,
    PermissionDeniedError,
    RollbackError,
    RollbackTimeoutError,
    RunCancelledError,
    UnsupportedError,
    VerificationFailedError,
)

__all__ = [
    "AlreadyDoneError",
    "BackendError",
    "ConflictError",
    "CorruptError",
    "DivergedError",
    "InternalError",
    "InvalidInputError",
    "RunStateError",
    "LockedError",
    "NotFoundError",
    "PermissionDeniedError",
    "RollbackError",
    "RollbackTimeoutError",
    "RunCancelledError",
    "UnsupportedError",
    "VerificationFailedError",
]
