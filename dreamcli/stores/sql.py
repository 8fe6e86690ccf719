"""SQL text handling shared by every Database adapter and by migrations."""

from __future__ import annotations

import sqlite3


def split_statements(script: str) -> list[str]:
    """Split SQL text into complete statements, the way D1 runs `;`-separated SQL as a batch.

    Semicolons inside strings, comments and trigger bodies do not split, because a
    piece only ends where SQLite itself says the statement is complete.
    """
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer = f"{buffer};{piece}" if buffer else piece
        if sqlite3.complete_statement(buffer + ";"):
            if _has_code(buffer):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and _has_code(buffer):
        statements.append(buffer.strip())
    return statements


def _has_code(sql: str) -> bool:
    """False for pieces that hold only whitespace and comments."""
    lines = []
    for line in sql.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            continue
        lines.append(stripped)
    text = " ".join(lines).strip()
    while text.startswith("/*") and "*/" in text:
        text = text[text.index("*/") + 2 :].strip()
    return bool(text)
