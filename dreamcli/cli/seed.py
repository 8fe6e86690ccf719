"""`dream seed`: synthetic platforms in the store, some of them broken on purpose, to rehearse verify and repair on
realistic volumes without writing Python."""

from typing import Annotated, Any

import typer

from dreamcli.cli.context import JsonOption, app_context, print_json, progress_line, status
from dreamcli.errors import UsageError


def seed(
    ctx: typer.Context,
    platforms: Annotated[int, typer.Option("--platforms", min=1, max=10_000_000, help="How many developers.")] = 1000,
    drift: Annotated[
        float,
        typer.Option("--drift", min=0.0, max=1.0, help="The fraction of them broken, one break each (0.01 = 1%)."),
    ] = 0.0,
    seed_value: Annotated[int, typer.Option("--seed", help="The random seed (the same seed, the same data).")] = 1,
    paying: Annotated[
        float,
        typer.Option(
            "--paying", min=0.0, max=1.0, help="The fraction of developers on plan paid, with a subscription."
        ),
    ] = 0.25,
    keys_only: Annotated[
        bool,
        typer.Option("--keys-only", help="Only the token keys (what verify and repair read): the fastest rehearsal."),
    ] = False,
    json_flag: JsonOption = False,
) -> None:
    """Write PLATFORMS synthetic developers (their platform ids, Stripe tokens, products, key pairs, tier configs
    and usage: 12 keys each) into the store, a --drift fraction of them broken the ways replication breaks (a
    missing api-tokens secret or publishable mapping, a stale one, a missing reverse mapping, a stale Stripe token).

    Unless --keys-only, every view gets data too: each platform's three end-users as D1 customers (one on pro, with
    its active subscription), their calls over the last 7 days and their month in api-usage (dashboard, usage,
    customers); and the developers in the emulated Clerk (their plan) and Stripe (a --paying fraction subscribed to
    the platform's price), for `dream overview`. Real vendors (named by the environment) are never written to.

    Example: dream --store emulator:rehearsal.db seed --platforms 100000 --drift 0.01 && dream --store
    emulator:rehearsal.db kv verify --json
    """
    from dreamcli.platform import synthetic

    run = app_context(ctx)
    store = run.store(create=True)
    emulator, vendors_note = None, None
    if not keys_only:
        try:
            emulator = run.emulator("seeding the developers", create=True)
        except UsageError:  # real vendors named by the environment: never written to
            vendors_note = "the vendors are real (named by the environment): seed writes nothing to them"
    totals = {"end_users": 0, "d1_rows": 0, "developers": 0, "paid": 0, "chunks": 0}
    pending: list[tuple[int, str, str, str]] = []

    def flush() -> None:
        """What every view reads, for the platforms written since the last flush (a few hundred at a time: memory
        stays flat and the progress line moves)."""
        if not pending:
            return
        chunk_seed = seed_value * 1_000_003 + totals["chunks"]
        end_users, d1_rows = synthetic.seed_views(store, pending, now=store.clock(), seed_value=chunk_seed)
        totals["end_users"] += end_users
        totals["d1_rows"] += d1_rows
        if emulator is not None:
            developers, paid = synthetic.seed_vendors(emulator, pending, paying=paying, seed_value=chunk_seed)
            totals["developers"] += developers
            totals["paid"] += paid
        totals["chunks"] += 1
        pending.clear()

    def each(*platform: Any) -> None:
        pending.append(platform)
        if len(pending) >= CHUNK:
            flush()

    report = _phase(
        "seeding",
        platforms,
        lambda progress: synthetic.seed(
            store,
            platforms,
            drift=drift,
            seed_value=seed_value,
            on_progress=progress,
            each=None if keys_only else each,
        ),
    )
    flush()
    end_users, d1_rows, developers, paid = (totals[k] for k in ("end_users", "d1_rows", "developers", "paid"))
    if run.wants_json(json_flag):
        print_json(
            {
                "schemaVersion": 1,
                "platforms": report.platforms,
                "keys": report.keys,
                "drifted": report.drifted,
                "endUsers": end_users,
                "d1Rows": d1_rows,
                "developers": developers,
                "paying": paid,
            }
        )
        return
    typer.echo(f"{report.platforms} platforms, {report.keys} keys, {report.drifted} broken")
    if not keys_only:
        typer.echo(
            f"{end_users} end-users, {d1_rows} D1 rows; {developers} developers in Clerk, {paid} paying in Stripe"
        )
    if vendors_note:
        status(vendors_note)


CHUNK = 500  # platforms whose views are written together


def _phase(label: str, total: int, work: Any, unit: str = "platforms") -> Any:
    """`work(progress)` with a progress line of its own on a terminal, ended when it is done."""
    progress = progress_line(label, total, unit)
    result = work(progress)
    if progress is not None:
        progress(total)
        typer.echo("", err=True)  # end the progress line
    return result
