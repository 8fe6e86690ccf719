"""`dream seed`: synthetic platforms in the store, some of them broken on purpose, to rehearse verify and repair on
realistic volumes without writing Python."""

from typing import Annotated

import typer

from dreamcli.cli.context import JsonOption, app_context, print_json, progress_line


def seed(
    ctx: typer.Context,
    platforms: Annotated[int, typer.Option("--platforms", min=1, max=10_000_000, help="How many developers.")] = 1000,
    drift: Annotated[
        float,
        typer.Option("--drift", min=0.0, max=1.0, help="The fraction of them broken, one break each (0.01 = 1%)."),
    ] = 0.0,
    seed_value: Annotated[int, typer.Option("--seed", help="The random seed (the same seed, the same data).")] = 1,
    json_flag: JsonOption = False,
) -> None:
    """Write PLATFORMS synthetic developers (their platform ids, Stripe tokens, products, key pairs, tier configs
    and usage: 12 keys each) into the store, a --drift fraction of them broken the ways replication breaks (a
    missing api-tokens secret or publishable mapping, a stale one, a missing reverse mapping, a stale Stripe token).

    Example: dream --store emulator:rehearsal.db seed --platforms 100000 --drift 0.01 && dream --store
    emulator:rehearsal.db kv verify --json
    """
    from dreamcli.platform import synthetic

    store = app_context(ctx).store(create=True)
    progress = progress_line("seeding", platforms, "platforms")
    report = synthetic.seed(store, platforms, drift=drift, seed_value=seed_value, on_progress=progress)
    if progress is not None:
        progress(platforms)
        typer.echo("", err=True)  # end the progress line
    if app_context(ctx).wants_json(json_flag):
        print_json({"schemaVersion": 1, "platforms": report.platforms, "keys": report.keys, "drifted": report.drifted})
        return
    typer.echo(f"{report.platforms} platforms, {report.keys} keys, {report.drifted} broken")
