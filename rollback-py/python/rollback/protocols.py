"""The shapes of Python targets, verifiers, snapshots and notifiers the Rust engine
runs.

Methods may be plain functions or ``async def``. Plain ones are called on the
engine's blocking threads, with the GIL. ``async def`` ones run on the caller's
event loop when the run is awaited through ``AsyncEngine``, and with
``asyncio.run`` on an engine thread under the blocking ``Engine`` (whose caller's
loop, if any, is blocked). Exceptions become errors of the run (a
``RollbackError`` subclass keeps its kind; any other is a permanent ``backend``
error naming the Python type).
"""

from __future__ import annotations

from typing import Any, Dict, Protocol, Tuple, Union, runtime_checkable

Version = Union[str, Dict[str, Any]]
Observed = Union[str, Tuple[str, str], Dict[str, str]]
CheckResult = Union[bool, None, str, Tuple[str, str], Dict[str, Any]]


@runtime_checkable
class TargetProtocol(Protocol):
    """A target. Attributes: ``name`` (required), ``kind`` (default ``"python"``),
    ``category`` (``app | schema | data | config | traffic | flag | cache | other``),
    ``versioned`` (default: has ``current`` and ``history``), ``converges_from_partial``.

    Versioned targets implement ``current()`` and ``history()`` (newest first: str ids
    or dicts ``{id, label?, created?, description?, available?}``) and rollback's
    ``prepare_versioned`` resolves selectors; action targets implement
    ``prepare(request)`` returning a change dict with at least ``to``.

    ``apply(change, key)`` runs only after ``observe`` said the target is still at
    ``change["from"]`` (or part-way): the compare-and-swap gate is enforced by rollback.
    Stamp ``key`` somewhere ``observe`` can see it if you can.
    ``observe(change, key)`` returns ``"done" | "not_started" | ("partial", detail) |
    ("diverged", detail)``.
    """

    name: str

    def apply(self, change: Dict[str, Any], key: str) -> None: ...

    def observe(self, change: Dict[str, Any], key: str) -> Observed: ...


@runtime_checkable
class VerifierProtocol(Protocol):
    """A verifier: ``check()`` returns ``True``/``False``, ``"pass" | "fail" |
    "inconclusive"``, ``(outcome, detail)`` or ``{outcome, detail?, measurements?}``;
    ``None`` (or an exception) is inconclusive."""

    name: str

    def check(self) -> CheckResult: ...


@runtime_checkable
class SnapshotProtocol(Protocol):
    """A snapshot (``Engine(snapshots=[...])`` or a class in ``snapshot_kinds``).
    ``capture(key)`` returns ``{"artifacts": {name: bytes | str}, "description": str,
    "metadata": {...}}``; the engine writes the artifacts into its store. Optional:
    ``restore(snapshot, artifacts)`` gets the journaled snapshot (its ``metadata`` is
    capture's) and the artifacts read back as ``{name: bytes}``; it may run again
    after a crash unless ``restored(snapshot, key)`` returns ``True``."""

    name: str

    def capture(self, key: str) -> Dict[str, Any]: ...


@runtime_checkable
class NotifierProtocol(Protocol):
    """A notifier: ``notify(event)`` with each engine event as a dict (``run``, ``at``,
    ``event`` and its fields). Failures are journaled; the run goes on."""

    name: str

    def notify(self, event: Dict[str, Any]) -> None: ...


__all__ = ["TargetProtocol", "VerifierProtocol", "SnapshotProtocol", "NotifierProtocol", "Version", "Observed", "CheckResult"]

