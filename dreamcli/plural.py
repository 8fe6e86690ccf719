"""Counted nouns in messages, for the CLI and the core alike (the core never imports the CLI)."""


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 row`, `2 rows`, `1 byte`; `words` for a plural that is not `word` + "s" (`retries`)."""
    return f"{count} {word}" if count == 1 else f"{count} {words or word + 's'}"
