"""Label Studio on PostgreSQL: a `postgresql://user:password@host:port/name` URL becomes Label Studio's
DJANGO_DB/POSTGRE_* settings; databases are created (and, for tests, dropped) through psycopg."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql


class PostgresURLError(ValueError):
    pass


@dataclass(frozen=True)
class PostgresDatabase:
    host: str
    port: int
    user: str
    password: str
    name: str

    @classmethod
    def from_url(cls, url: str) -> PostgresDatabase:
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise PostgresURLError(f"not a PostgreSQL URL (postgresql://user:password@host:port/database): {url!r}")
        name = unquote(parts.path.lstrip("/"))
        if not name or "/" in name:
            raise PostgresURLError("the PostgreSQL URL names no database (postgresql://user@host:5432/labelstudio)")
        try:
            port = parts.port or 5432
        except ValueError as exc:
            raise PostgresURLError(f"bad port in the PostgreSQL URL: {exc}") from exc
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            name=name,
        )

    def label_studio_env(self) -> dict[str, str]:
        """Label Studio 1.23's settings for its PostgreSQL database."""
        return {
            "DJANGO_DB": "default",
            "POSTGRE_NAME": self.name,
            "POSTGRE_USER": self.user,
            "POSTGRE_PASSWORD": self.password,
            "POSTGRE_HOST": self.host,
            "POSTGRE_PORT": str(self.port),
        }

    def connect(self, database: str | None = None) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=database or self.name,
            autocommit=True,
            connect_timeout=5,
        )

    def exists(self) -> bool:
        with self.connect("postgres") as connection:
            found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)).fetchone()
        return found is not None

    def create(self) -> bool:
        """Create the database if it does not exist; True when it was created."""
        if self.exists():
            return False
        with self.connect("postgres") as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        return True

    def drop(self) -> None:
        with self.connect("postgres") as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
