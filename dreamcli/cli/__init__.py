"""The `dream` command line: Typer sub-apps, one per command group."""
