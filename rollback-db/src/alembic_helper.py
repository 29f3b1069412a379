# The one Alembic process of a rollback step (rollback-db's `alembic` kind).
#
# Run with the project's interpreter as `python -c THIS INI`, in the ini's directory.
# It reads requests as JSON lines on stdin and answers each with one JSON line, on
# a private copy of stdout: anything else printed (env.py, logging) goes to stderr.
# First line in: {"x": [...], "url": null | "..."} (the URL never on argv); first
# line out: {"ok": {"alembic": VERSION}} or {"error": ...}. Then requests:
#   {"op": "current"}                     -> "0002" | "base"
#   {"op": "chain"}                       -> [[rev, message], ..., ["base", ...]], newest first
#   {"op": "preview", "from": F, "to": T} -> the SQL of `alembic downgrade F:T --sql`
#   {"op": "downgrade", "to": T}          -> null
# Errors: {"error": {"kind": "backend" | "unsupported" | "not_found", "type": T,
# "traceback": TEXT, "retryable": bool}}.
import io
import json
import os
import sys
import traceback

_protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)
sys.stdout = sys.stderr


def _reply(obj):
    _protocol.write(json.dumps(obj) + "\n")
    _protocol.flush()


class Refused(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def _error(exc):
    name = type(exc).__module__ + "." + type(exc).__qualname__
    kind = exc.kind if isinstance(exc, Refused) else "backend"
    text = str(exc) if isinstance(exc, Refused) else "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"error": {"kind": kind, "type": name, "traceback": text, "retryable": "OperationalError" in name}}


try:
    import argparse

    import alembic
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    _hello = json.loads(sys.stdin.readline())
except BaseException as exc:  # noqa: BLE001 - every failure is an answer
    _reply(_error(exc))
    sys.exit(0)

_INI = sys.argv[1]


def _config(buffer=None):
    cfg = Config(_INI, cmd_opts=argparse.Namespace(x=_hello.get("x") or None), output_buffer=buffer)
    if _hello.get("url") is not None:
        # ConfigParser interpolates `%`: a password with one must be written `%%`.
        cfg.set_main_option("sqlalchemy.url", _hello["url"].replace("%", "%%"))
    return cfg


def _script(cfg):
    script = ScriptDirectory.from_config(cfg)
    heads = script.get_heads()
    if len(heads) > 1:
        raise Refused(
            "unsupported",
            "branched Alembic histories are not supported (heads: " + ", ".join(sorted(heads)) + "); merge them "
            "(alembic merge heads) or roll back with the alembic CLI",
        )
    return script


def current():
    cfg = _config()
    script = _script(cfg)
    heads = []

    def read(rev, context):
        heads.extend(context.get_current_heads())
        return []

    with EnvironmentContext(cfg, script, fn=read, dont_mutate=True):
        script.run_env()
    if len(heads) > 1:
        raise Refused("unsupported", "the database is at several heads: " + ", ".join(sorted(heads)))
    return heads[0] if heads else "base"


def chain():
    script = _script(_config())
    revisions = []
    for sc in script.walk_revisions():
        if sc.is_branch_point or sc.is_merge_point:
            raise Refused("unsupported", "branched Alembic histories are not supported: " + sc.revision + " is a "
                          + ("branch point" if sc.is_branch_point else "merge point"))
        revisions.append([sc.revision, sc.doc or ""])
    revisions.append(["base", "before the first revision"])
    return revisions


def preview(frm, to):
    buffer = io.StringIO()
    command.downgrade(_config(buffer), frm + ":" + to, sql=True)
    return buffer.getvalue()


def downgrade(to):
    command.downgrade(_config(), to)


_reply({"ok": {"alembic": alembic.__version__}})
for line in sys.stdin:
    try:
        request = json.loads(line)
        op = request["op"]
        if op == "current":
            result = current()
        elif op == "chain":
            result = chain()
        elif op == "preview":
            result = preview(request["from"], request["to"])
        elif op == "downgrade":
            result = downgrade(request["to"])
        else:
            raise Refused("unsupported", "unknown request " + repr(op))
        _reply({"ok": result})
    except BaseException as exc:  # noqa: BLE001 - every failure is an answer, the helper stays up
        _reply(_error(exc))
