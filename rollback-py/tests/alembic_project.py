"""A real Alembic project on a fresh PostgreSQL database, for the tests."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import List, Tuple
from urllib.parse import urlparse

import psycopg2


def create_database(server_url: str) -> Tuple[str, str]:
    """A fresh database; returns (name, SQLAlchemy URL)."""
    name = f"rbpy_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(server_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    u = urlparse(server_url)
    return name, f"postgresql+psycopg2://{u.username}:{u.password}@{u.hostname}:{u.port or 5432}/{name}"


def drop_database(server_url: str, name: str) -> None:
    conn = psycopg2.connect(server_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def database_url(server_url: str, name: str) -> str:
    u = urlparse(server_url)
    return u._replace(path=f"/{name}").geturl()


def tables(server_url: str, name: str) -> List[str]:
    conn = psycopg2.connect(database_url(server_url, name))
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
        found = [r[0] for r in cur.fetchall()]
        version = None
        if "alembic_version" in found:
            cur.execute("SELECT version_num FROM alembic_version")
            row = cur.fetchone()
            version = row[0] if row else None
    conn.close()
    return found + ([f"@{version}"] if version else [])


def project(alembic: str, root: Path, sqlalchemy_url: str, upgrade_to: str = "head") -> Path:
    """`alembic init`, three revisions (users, orders, coupons), `alembic upgrade`."""
    root.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([alembic, *args], cwd=root, check=True, capture_output=True, text=True)

    run("init", "migrations")
    ini = root / "alembic.ini"
    lines = [
        f"sqlalchemy.url = {sqlalchemy_url}" if line.startswith("sqlalchemy.url") else line
        for line in ini.read_text().splitlines()
    ]
    ini.write_text("\n".join(lines) + "\n")
    for i, table in [(1, "users"), (2, "orders"), (3, "coupons")]:
        down = "None" if i == 1 else f"'000{i - 1}'"
        (root / f"migrations/versions/000{i}_{table}.py").write_text(
            f'"""create {table}"""\nfrom alembic import op\nrevision = "000{i}"\ndown_revision = {down}\n'
            "branch_labels = None\ndepends_on = None\n\n"
            f'def upgrade():\n    op.execute("CREATE TABLE {table} (id INTEGER PRIMARY KEY)")\n\n'
            f'def downgrade():\n    op.execute("DROP TABLE {table}")\n'
        )
    run("-c", "alembic.ini", "upgrade", upgrade_to)
    return ini
