"""D1 migrations applied the way `wrangler d1 migrations apply` does, over any Database.

Files `NNNN_name.sql` in a folder, sorted by name; each unapplied file runs in
one batch (one transaction) together with its row in `d1_migrations`, so the
same folder and the same table work with wrangler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dreamcli.errors import D1Error, NotFound, UsageError
from dreamcli.stores.ports import Database, Statement
from dreamcli.stores.sql import split_statements

# wrangler's own DDL for the table (packages/wrangler/src/d1/migrations/helpers.ts).
CREATE_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS d1_migrations(
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT UNIQUE,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
)"""


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    path: Path
    applied_at: str | None = None

    @property
    def applied(self) -> bool:
        return self.applied_at is not None


def default_migrations_dir() -> Path:
    """The project's `migrations/`: beside the package in a source tree, inside it in a wheel."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "d1_migrations"
    return packaged if packaged.is_dir() else here.parent / "migrations"


def migration_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise NotFound(f"migrations folder {folder} does not exist")
    return sorted((path for path in folder.iterdir() if path.suffix == ".sql" and path.is_file()), key=lambda p: p.name)


def list_migrations(db: Database, folder: Path) -> list[Migration]:
    """Every migration file with the time it was applied (None if pending)."""
    db.execute(CREATE_MIGRATIONS_TABLE)
    applied = {
        row["name"]: row["applied_at"] for row in db.execute("SELECT name, applied_at FROM d1_migrations").results
    }
    return [Migration(path.name, path, applied.get(path.name)) for path in migration_files(folder)]


def apply_migrations(
    db: Database, folder: Path, *, on_applied: Callable[[Migration], None] | None = None
) -> list[Migration]:
    """Apply every pending migration in name order; stop at the first that fails (it leaves no trace)."""
    done: list[Migration] = []
    for migration in list_migrations(db, folder):
        if migration.applied:
            continue
        try:
            sql = migration.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read migration {migration.path}: {exc}") from None
        statements = [Statement(text) for text in split_statements(sql)]
        statements.append(Statement("INSERT INTO d1_migrations (name) VALUES (?)", (migration.name,)))
        try:
            db.batch(statements)
        except D1Error as exc:
            raise D1Error(f"migration {migration.name} failed and was rolled back: {exc}") from None
        done.append(migration)
        if on_applied is not None:
            on_applied(migration)
    return done
