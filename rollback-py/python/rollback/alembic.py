"""Alembic tooling: an existing project's ``alembic.ini`` as a rollback target.

``Alembic("alembic.ini")`` drives the project's Alembic through its own API, in one
helper process per target run with the project's interpreter (by default this one,
so the project's virtualenv and ``env.py`` are used as they are): ``current()``,
``history()``, ``sql_preview(to)`` (what ``alembic downgrade CUR:TARGET --sql``
prints, nothing executed), ``downgrade(to)`` (prepared once, applied as
compare-and-swap), and ``spec`` to put the same target in a plan next to the app.

The database URL, with its password, is a secret reference, handed to Alembic in
the variable the project's ``env.py`` reads, or without ``url_env`` set as the
ini's ``sqlalchemy.url`` through Alembic's API — never on a command line::

    Alembic("alembic.ini", url={"from": "env", "var": "DATABASE_URL"}, url_env="DATABASE_URL")

Branched histories (several heads) are refused, naming the heads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

from ._rollback import Target

if TYPE_CHECKING:
    from ._rollback import ChangeDict

Selector = Union[str, int, Dict[str, Any]]


def selector(to: Selector) -> Any:
    """``"previous"``, a revision id (exact), ``n`` (n back) or a selector dict."""
    if isinstance(to, bool):
        raise TypeError("a selector is 'previous', a revision, an int or a dict")
    if isinstance(to, int):
        return {"back": to}
    if isinstance(to, str) and to != "previous":
        return {"exact": to}
    return to


class Alembic:
    """An Alembic project (its ``alembic.ini``) as the rollback target kind ``alembic``."""

    def __init__(
        self,
        config: Union[str, "os.PathLike[str]"] = "alembic.ini",
        *,
        name: str = "schema",
        command: Optional[Sequence[str]] = None,
        python: Optional[str] = None,
        timeout: str = "10m",
        url: Optional[Dict[str, Any]] = None,
        url_env: Optional[str] = None,
        x: Sequence[str] = (),
    ) -> None:
        self.config = os.path.abspath(os.fspath(config))
        if not os.path.isfile(self.config):
            raise FileNotFoundError(f"no Alembic config at {self.config}")
        self.name = name
        self.command: List[str] = list(command) if command else [sys.executable, "-m", "alembic"]
        self.python = python
        self.timeout = timeout
        self.url = dict(url) if url is not None else None
        self.url_env = url_env
        self.x = list(x)
        self._target: Optional[Target] = None

    @property
    def spec(self) -> Dict[str, Any]:
        """The target spec for a plan's ``targets`` list."""
        config: Dict[str, Any] = {"config": self.config, "command": self.command, "timeout": self.timeout}
        if self.python is not None:
            config["python"] = self.python
        if self.url_env is not None:
            config["url_env"] = self.url_env
        if self.x:
            config["x"] = self.x
        spec: Dict[str, Any] = {"kind": "alembic", "name": self.name, "config": config}
        if self.url is not None:
            spec["secrets"] = {"url": self.url}
        return spec

    @property
    def target(self) -> Target:
        """The rollback ``Target`` (built once)."""
        if self._target is None:
            self._target = Target(self.spec)
        return self._target

    def current(self) -> str:
        """The revision the database is at (``base`` when empty)."""
        return self.target.current()["id"]

    def history(self) -> List[Dict[str, Any]]:
        """Revisions newest first: ``{"revision", "message"}``, ending with ``base``."""
        return [
            {"revision": r["version"]["id"], "message": r.get("description", "")} for r in self.target.history()
        ]

    def prepare(self, to: Selector = "previous") -> ChangeDict:
        """Resolves ``to`` once into an absolute change (with the SQL preview); changes nothing."""
        return self.target.prepare(selector(to))

    def sql_preview(self, to: Selector = "previous") -> str:
        """The SQL that migrating down to ``to`` would run, without running it."""
        return self.prepare(to).get("preview", "")

    def downgrade(self, to: Selector = "previous", *, key: Optional[str] = None) -> ChangeDict:
        """Prepares and applies a downgrade (compare-and-swap on the current revision);
        returns the change. Prefer a plan run by an ``Engine`` for a journaled rollback."""
        change = self.prepare(to)
        self.target.apply(change, key or f"alembic-{uuid.uuid4()}")
        return change

    def upgrade(self, revision: str = "head") -> None:
        """``alembic upgrade REVISION`` with the same command and URL (for deploy scripts)."""
        env = dict(os.environ)
        args = [*self.command, "-c", self.config, *(a for x in self.x for a in ("-x", x)), "upgrade", revision]
        stdin = None
        if self.url is not None and self.url_env is not None:
            env[self.url_env] = self._url()
        elif self.url is not None:
            # No variable for env.py: set sqlalchemy.url through Alembic's API, the URL on stdin.
            args = [self.python or sys.executable, "-c", _UPGRADE_WITH_URL, self.config, revision, *self.x]
            stdin = self._url()
        subprocess.run(
            args,
            cwd=os.path.dirname(self.config),
            env=env,
            input=stdin,
            check=True,
            capture_output=True,
            text=True,
        )

    def _url(self) -> str:
        """The URL the secret reference points to (an environment variable or a file)."""
        assert self.url is not None
        if self.url.get("from") == "env":
            return os.environ[self.url["var"]]
        if self.url.get("from") == "file":
            with open(self.url["path"], encoding="utf-8") as f:
                return f.read().strip()
        raise ValueError("url is a secret reference: {'from': 'env', 'var': …} or {'from': 'file', 'path': …}")

    def __repr__(self) -> str:
        return f"Alembic({self.config!r}, name={self.name!r})"


_UPGRADE_WITH_URL = """
import argparse, sys
from alembic import command
from alembic.config import Config
cfg = Config(sys.argv[1], cmd_opts=argparse.Namespace(x=sys.argv[3:] or None))
cfg.set_main_option("sqlalchemy.url", sys.stdin.read().replace("%", "%%"))
command.upgrade(cfg, sys.argv[2])
"""

__all__ = ["Alembic", "selector"]
