"""Type stubs of the extension module ``rollback._rollback``."""

import datetime
import os
from typing import Any, Awaitable, Callable, Dict, Iterable, Iterator, List, Literal, Mapping, Optional, Sequence, TypedDict, Union

from typing_extensions import final

__all__ = [
    "AlreadyDoneError",
    "AsyncEngine",
    "BACKENDS",
    "BackendError",
    "Cancel",
    "ConflictError",
    "CorruptError",
    "Decision",
    "DivergedError",
    "DryRun",
    "Engine",
    "InternalError",
    "InvalidInputError",
    "LabService",
    "LockedError",
    "NotFoundError",
    "PermissionDeniedError",
    "Plan",
    "Report",
    "RollbackError",
    "RollbackTimeoutError",
    "RunCancelledError",
    "RunStateError",
    "Secrets",
    "Target",
    "UnsupportedError",
    "VerificationFailedError",
    "Verifier",
    "__version__",
    "bench_detection",
    "bench_latency",
    "gather_signals",
    "gather_signals_range",
    "kinds",
    "progress",
    "replay",
    "replay_signals",
    "should_rollback",
]
__version__: str
BACKENDS: List[str]

Duration = Union[str, datetime.timedelta]
PlanLike = Union["Plan", Mapping[str, Any], str]
Selector = Union[Literal["previous"], Dict[str, Any]]
RunState = Literal[
    "pending",
    "locked",
    "preflighted",
    "running",
    "succeeded",
    "failed",
    "compensating",
    "compensated",
    "escalated",
    "cancelled",
]

class VersionDict(TypedDict, total=False):
    id: str
    label: str

class CheckDict(TypedDict):
    at: str
    latency: str
    outcome: Literal["pass", "fail", "inconclusive"]
    detail: str
    measurements: Dict[str, float]

class VerdictDict(TypedDict):
    passed: bool
    reason: str
    checks: List[CheckDict]

class ChangeDict(TypedDict, total=False):
    target: str
    kind: str
    schema_version: int
    to: VersionDict
    payload: Any
    description: str
    reversibility: Literal["inverse", "needs_snapshot", "irreversible"]
    data_loss: Dict[str, Any]
    preview: str

class HistoryRecordDict(TypedDict):
    run: str
    plan: str
    date: str
    duration: str
    state: RunState
    reason: Optional[str]
    changes: List[Dict[str, Any]]
    escalation: Optional[Literal["S1", "S2", "S3"]]
    undoes: Optional[str]
    root_cause: Optional[str]
    postmortem: Optional[str]

class RunIndexDict(TypedDict):
    run: str
    plan: str
    started_at: str

# --- errors: one class per kind ------------------------------------------------

class RollbackError(Exception):
    """Base of every rollback error."""

    kind: str
    """Stable kind name: ``invalid_input``, ``not_found``, ``locked``, …"""
    message: str
    """The message without context."""
    retryable: bool
    """Whether retrying the same idempotent call may succeed."""
    operation: Optional[str]
    """The operation that failed, if recorded."""
    context: Optional[Dict[str, str]]
    """Context pairs (never secrets)."""

class InvalidInputError(RollbackError): ...
class NotFoundError(RollbackError): ...
class UnsupportedError(RollbackError): ...
class LockedError(RollbackError): ...
class ConflictError(RollbackError): ...
class DivergedError(RollbackError): ...
class RollbackTimeoutError(RollbackError): ...
class BackendError(RollbackError): ...
class VerificationFailedError(RollbackError): ...
class RunCancelledError(RollbackError): ...
class CorruptError(RollbackError): ...
class RunStateError(RollbackError): ...
class PermissionDeniedError(RollbackError): ...
class InternalError(RollbackError): ...
class AlreadyDoneError(RollbackError): ...

# --- plans and results -----------------------------------------------------------

@final
class Plan:
    """A rollback plan: stages of steps, target/verifier/snapshot specs, a budget."""

    def __new__(cls, source: PlanLike) -> "Plan": ...
    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Plan: ...
    @staticmethod
    def from_toml(text: str) -> Plan: ...
    @staticmethod
    def from_json(text: str) -> Plan: ...
    @staticmethod
    def load(path: Union[str, os.PathLike[str]]) -> Plan: ...
    @property
    def name(self) -> str: ...
    @property
    def budget(self) -> float:
        """Seconds."""
    @property
    def step_ids(self) -> List[str]: ...
    def to_dict(self) -> Dict[str, Any]: ...
    def to_toml(self) -> str: ...
    def to_json(self) -> str: ...

@final
class Report:
    """What a run did, derived from its journal."""

    @property
    def run(self) -> str: ...
    @property
    def plan(self) -> str: ...
    @property
    def state(self) -> RunState: ...
    @property
    def succeeded(self) -> bool: ...
    @property
    def state_reason(self) -> Optional[str]: ...
    @property
    def reason(self) -> Optional[str]: ...
    @property
    def duration(self) -> float:
        """Seconds."""
    @property
    def budget_exceeded(self) -> bool: ...
    @property
    def steps(self) -> List[Dict[str, Any]]: ...
    @property
    def not_started(self) -> List[str]: ...
    @property
    def escalations(self) -> List[Dict[str, Any]]: ...
    @property
    def left(self) -> List[str]: ...
    @property
    def resume_would(self) -> str: ...
    @property
    def nothing_to_do(self) -> bool: ...
    @property
    def already_done(self) -> List[str]: ...
    @property
    def notification_failures(self) -> List[str]: ...
    def to_dict(self) -> Dict[str, Any]: ...

@final
class DryRun:
    """The plan as it would run now, with nothing changed."""

    @property
    def plan(self) -> str: ...
    @property
    def identities(self) -> Dict[str, str]: ...
    @property
    def steps(self) -> List[Dict[str, Any]]: ...
    def to_dict(self) -> Dict[str, Any]: ...

@final
class Cancel:
    """Cancels a run at its next step boundary."""

    def __new__(cls) -> "Cancel": ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

EventCallback = Callable[[Dict[str, Any]], Any]

@final
class Engine:
    """Runs plans; blocking methods release the GIL while the Rust engine works."""

    def __new__(
        cls,
        home: Union[str, os.PathLike[str], None] = None,
        *,
        journal: Union[None, Literal["file", "memory"], Mapping[str, Any]] = None,
        targets: Optional[Iterable[Any]] = None,
        verifiers: Optional[Iterable[Any]] = None,
        notifiers: Optional[Iterable[Any]] = None,
        target_kinds: Optional[Mapping[str, Callable[[str, Any], Any]]] = None,
        verifier_kinds: Optional[Mapping[str, Callable[[str, Any], Any]]] = None,
        snapshots: Optional[Iterable[Any]] = None,
        snapshot_kinds: Optional[Mapping[str, Callable[[str, Any], Any]]] = None,
        on_event: Optional[EventCallback] = None,
        lease_ttl: Optional[float] = None,
        approval_poll: Optional[float] = None,
        lock: Union[None, Literal["file"], Mapping[str, Any]] = None,
        host: Optional[str] = None,
    ) -> "Engine": ...
    def dry_run(self, plan: PlanLike) -> DryRun: ...
    def run(
        self,
        plan: PlanLike,
        *,
        reason: Optional[str] = None,
        run_id: Optional[str] = None,
        cancel: Optional[Cancel] = None,
        again: bool = False,
        no_wait: bool = False,
    ) -> Report: ...
    def resume(self, run: str, *, cancel: Optional[Cancel] = None) -> Report: ...
    def report(self, run: str) -> Report: ...
    def approve(self, run: str, step: str, *, by: str, approved: bool = True) -> None: ...
    def request_cancel(self, run: str, *, by: str) -> None: ...
    def runs(self) -> List[RunIndexDict]: ...
    def history(
        self,
        *,
        target: Optional[str] = None,
        since: Union[datetime.datetime, str, None] = None,
        until: Union[datetime.datetime, str, None] = None,
    ) -> List[HistoryRecordDict]: ...
    def annotate(
        self, run: str, *, by: str, root_cause: Optional[str] = None, postmortem: Optional[str] = None
    ) -> None: ...
    def replay(
        self, run: str, policy: Optional[Mapping[str, Any]] = None, *, assume_last_holds: bool = False
    ) -> List[Dict[str, Any]]: ...
    def plan_undo(self, run: str) -> Plan: ...

@final
class AsyncEngine:
    """``Engine`` with awaitable methods (asyncio)."""

    def __new__(
        cls,
        home: Union[str, os.PathLike[str], None] = None,
        *,
        journal: Union[None, Literal["file", "memory"], Mapping[str, Any]] = None,
        targets: Optional[Iterable[Any]] = None,
        verifiers: Optional[Iterable[Any]] = None,
        notifiers: Optional[Iterable[Any]] = None,
        target_kinds: Optional[Mapping[str, Callable[[str, Any], Any]]] = None,
        verifier_kinds: Optional[Mapping[str, Callable[[str, Any], Any]]] = None,
        snapshots: Optional[Iterable[Any]] = None,
        snapshot_kinds: Optional[Mapping[str, Callable[[str, Any], Any]]] = None,
        on_event: Optional[EventCallback] = None,
        lease_ttl: Optional[float] = None,
        approval_poll: Optional[float] = None,
        lock: Union[None, Literal["file"], Mapping[str, Any]] = None,
        host: Optional[str] = None,
    ) -> "AsyncEngine": ...
    def dry_run(self, plan: PlanLike) -> Awaitable[DryRun]: ...
    def run(
        self,
        plan: PlanLike,
        *,
        reason: Optional[str] = None,
        run_id: Optional[str] = None,
        cancel: Optional[Cancel] = None,
        again: bool = False,
        no_wait: bool = False,
    ) -> Awaitable[Report]: ...
    def resume(self, run: str, *, cancel: Optional[Cancel] = None) -> Awaitable[Report]: ...
    def report(self, run: str) -> Awaitable[Report]: ...
    def approve(self, run: str, step: str, *, by: str, approved: bool = True) -> Awaitable[None]: ...
    def request_cancel(self, run: str, *, by: str) -> Awaitable[None]: ...
    def runs(self) -> Awaitable[List[RunIndexDict]]: ...
    def history(
        self,
        *,
        target: Optional[str] = None,
        since: Union[datetime.datetime, str, None] = None,
        until: Union[datetime.datetime, str, None] = None,
    ) -> Awaitable[List[HistoryRecordDict]]: ...
    def annotate(
        self, run: str, *, by: str, root_cause: Optional[str] = None, postmortem: Optional[str] = None
    ) -> Awaitable[None]: ...
    def replay(
        self, run: str, policy: Optional[Mapping[str, Any]] = None, *, assume_last_holds: bool = False
    ) -> Awaitable[List[Dict[str, Any]]]: ...
    def plan_undo(self, run: str) -> Awaitable[Plan]: ...

# --- components --------------------------------------------------------------------

@final
class Target:
    """One target built from a spec dict or wrapping a Python target object."""

    def __new__(cls, source: Any) -> "Target": ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    def identity(self) -> str: ...
    def current(self) -> VersionDict: ...
    def history(self) -> List[Dict[str, Any]]: ...
    def prepare(self, to: Optional[Selector] = None) -> ChangeDict: ...
    def apply(self, change: Mapping[str, Any], key: str) -> None: ...
    def observe(self, change: Mapping[str, Any], key: str) -> Dict[str, str]: ...

@final
class Verifier:
    """One verifier built from a spec dict or wrapping a Python verifier object."""

    def __new__(cls, source: Any) -> "Verifier": ...
    @staticmethod
    def noop(name: str = "noop") -> Verifier: ...
    @property
    def name(self) -> str: ...
    def check(self) -> CheckDict: ...
    def probe(
        self, policy: Optional[Mapping[str, Any]] = None, *, on_check: Optional[Callable[[CheckDict], object]] = None
    ) -> VerdictDict: ...
    def check_async(self) -> Awaitable[CheckDict]: ...
    def probe_async(self, policy: Optional[Mapping[str, Any]] = None) -> Awaitable[VerdictDict]: ...

@final
class Decision:
    """The decision policy's answer."""

    @property
    def action(self) -> Literal["rollback_now", "consider", "hotfix", "feature_flag_off", "investigate", "monitor"]: ...
    @property
    def reasons(self) -> List[str]: ...
    @property
    def rollback(self) -> bool: ...
    def __bool__(self) -> bool: ...
    def to_dict(self) -> Dict[str, Any]: ...

@final
class Secrets(Mapping[str, str]):
    """A spec's secrets, given to a Python target/verifier class as ``secrets=``;
    ``repr`` and ``str`` show the names only."""

    def __getitem__(self, key: str, /) -> str: ...
    def get(self, name: str, default: Optional[str] = None) -> Optional[str]: ...  # type: ignore[override]
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...
    def keys(self) -> List[str]: ...  # type: ignore[override]

def kinds() -> List[Dict[str, Any]]:
    """Every kind a spec dict can name: ``[{"role", "kind", "about", "schema"}]``."""

def progress(done: int, total: int | None = None, unit: str = "items") -> None:
    """Report how far a Python target's ``apply`` has come (a ``progress`` event);
    throttled to one per 100 ms, ``done == total`` always sent; a no-op outside a step."""

def should_rollback(
    signals: Optional[Mapping[str, Any]] = None,
    *,
    policy: Union[None, Literal["default", "runbook_003"], Mapping[str, Any]] = None,
    **kwargs: Any,
) -> Decision: ...
def gather_signals(
    prometheus_url: str, queries: Mapping[str, Any], *, headers_from_env: Optional[Mapping[str, str]] = None
) -> Dict[str, Any]: ...

# --- rollback.verify ---------------------------------------------------------------

@final
class LabService:
    """The controllable HTTP service (``/health``, ``/metrics``, ``POST /control``)."""

    def __new__(cls, schedule: str = "0s=healthy", *, listen: str = "127.0.0.1:0") -> "LabService": ...
    @property
    def url(self) -> str: ...
    @property
    def mode(self) -> str: ...
    def set(self, mode: str) -> None: ...
    @property
    def requests(self) -> int: ...
    def switches(self) -> List[Dict[str, Any]]: ...

def bench_latency(verifier: Any, *, concurrency: int = 8, checks: int = 200) -> Dict[str, Any]: ...
def bench_detection(
    verifier: Any,
    *,
    lab: Union[LabService, str],
    switch_from: str = "unhealthy",
    switch_to: str = "healthy",
    after: Union[float, datetime.timedelta, str, None] = None,
    spread: Union[float, datetime.timedelta, str, None] = None,
    settle: Union[float, datetime.timedelta, str, None] = None,
    policy: Optional[Mapping[str, Any]] = None,
    trials: int = 3,
) -> Dict[str, Any]: ...
def replay(
    checks: Sequence[Mapping[str, Any]], policy: Optional[Mapping[str, Any]] = None, *, assume_last_holds: bool = False
) -> Dict[str, Any]: ...
def replay_signals(
    series: Sequence[Mapping[str, Any]], policy: Union[str, Mapping[str, Any], None] = None
) -> List[Dict[str, Any]]: ...
def gather_signals_range(
    prometheus_url: str,
    queries: Mapping[str, Any],
    *,
    start: Union[datetime.datetime, str],
    end: Union[datetime.datetime, str],
    step: Union[float, datetime.timedelta, str, None] = None,
    headers_from_env: Optional[Mapping[str, str]] = None,
) -> List[Dict[str, Any]]: ...
