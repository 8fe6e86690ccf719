"""`dream keys`: create, list, rotate and revoke a platform's publishable/secret key pairs."""

import datetime as dt
from typing import Annotated

import typer

from dreamcli.cli.context import (
    JsonOption,
    LazyModule,
    PlanOption,
    YesOption,
    app_context,
    confirm_change,
    print_json,
    status,
    stdout_console,
)
from dreamcli.errors import UsageError

key_ops = LazyModule("dreamcli.platform.keys")
developers = LazyModule("dreamcli.platform.developers")

app = typer.Typer(
    help=(
        "Manage a platform's key pairs (production, staging, test, ...): every pair links to the same platform id.\n\n"
        "Example: dream keys rotate --user dev@example.com --env production --grace 24h"
    ),
    no_args_is_help=True,
)

PlatformOption = Annotated[str | None, typer.Option("--platform", "-p", help="The platform id (plt_...).")]
UserOption = Annotated[str | None, typer.Option("--user", "-u", help="The developer: Clerk user id or email.")]


def _platform(ctx: typer.Context, platform: str | None, user: str | None) -> str:
    if (platform is None) == (user is None):
        raise UsageError("give --platform PLT or --user U")
    if platform is not None:
        return platform
    run = app_context(ctx)
    user_id = user or ""
    if "@" in user_id:
        user_id = developers.user_id_of(run.vendors(), user_id)
    return developers.platform_of(run.store(), user_id)


def _when(timestamp: int | None) -> str:
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command("create")
def keys_create(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", "-e", help="production, staging, test or any label.")],
    platform: PlatformOption = None,
    user: UserOption = None,
    json_flag: JsonOption = False,
) -> None:
    """A new pair for the platform; the secret is shown now and never again (also in --json, only here).

    Example: dream keys create --user dev@example.com --env staging
    """
    run = app_context(ctx)
    created = key_ops.create_key(run.store(), _platform(ctx, platform, user), env, now=run.store().clock())
    if run.wants_json(json_flag):
        print_json(
            {
                "platformId": created.platform_id,
                "env": created.env,
                "publishableKey": created.pair.publishable_key,
                "secretKey": created.pair.secret_key,
            }
        )
        return
    typer.echo(f"publishable key: {created.pair.publishable_key}")
    typer.echo(f"secret key:      {created.pair.secret_key}")
    status("the secret key is shown only now; it is stored as its SHA-256")


@app.command("list")
def keys_list(
    ctx: typer.Context, platform: PlatformOption = None, user: UserOption = None, json_flag: JsonOption = False
) -> None:
    """Every pair of the platform with env, creation, status and the first characters of the secret.

    Pairs made before dream's index (by the guide's own workers) are listed as env "legacy".
    Example: dream keys list --platform plt_abc --json
    """
    from rich.table import Table

    run = app_context(ctx)
    now = run.store().clock()
    plt = _platform(ctx, platform, user)
    keys = key_ops.list_keys(run.store(), plt)
    if run.wants_json(json_flag):
        print_json({"platformId": plt, "keys": [info.as_json(now) for info in keys]})
        return
    table = Table("publishable key", "env", "created", "status", "secret", title=plt, title_justify="left")
    for info in keys:
        state = info.status(now)
        if state == "expiring":
            state = f"expiring at {_when(info.expires_at)}"
        table.add_row(info.publishable_key, info.env, _when(info.created), state, info.secret_start or "?")
    stdout_console().print(table)


@app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    platform: PlatformOption = None,
    user: UserOption = None,
    key: Annotated[str | None, typer.Option("--key", "-k", help="The publishable key to rotate.")] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Rotate this env's newest live pair.")] = None,
    grace: Annotated[
        str | None, typer.Option("--grace", help="Keep the old pair working this long (24h, 30m, 7d).")
    ] = None,
    plan: PlanOption = False,
    json_flag: JsonOption = False,
) -> None:
    """A new pair for the same platform and env. The old pair keeps working until revoked, or for --grace
    (KV expiration on its mappings in both namespaces; never past its own expiry). --plan says which pair and until
    when, creating nothing.

    Example: dream keys rotate --user dev@example.com --env production --grace 24h
    """
    run = app_context(ctx)
    options = {
        "publishable_key": key,
        "env": env,
        "grace_seconds": None if grace is None else key_ops.parse_duration(grace),
        "now": run.store().clock(),
    }
    platform_id = _platform(ctx, platform, user)
    if plan:
        planned = key_ops.plan_rotation(run.store(), platform_id, **options)
        if run.wants_json(json_flag):
            print_json(planned.as_json())
        else:
            until = _when(planned.expires_at) if planned.expires_at else "until revoked"
            typer.echo(f"new pair\t{planned.env}\nold pair\t{planned.old.publishable_key}\tworks {until}")
        return
    rotated = key_ops.rotate_key(run.store(), platform_id, **options)
    if run.wants_json(json_flag):
        print_json(
            {
                "platformId": rotated.new.platform_id,
                "env": rotated.new.env,
                "old": rotated.old,
                "oldExpiresAt": rotated.old_expires_at,
                "publishableKey": rotated.new.pair.publishable_key,
                "secretKey": rotated.new.pair.secret_key,
            }
        )
        return
    typer.echo(f"publishable key: {rotated.new.pair.publishable_key}")
    typer.echo(f"secret key:      {rotated.new.pair.secret_key}")
    until = f"until {_when(rotated.old_expires_at)}" if rotated.old_expires_at else "until you revoke it"
    status(f"the secret key is shown only now; {rotated.old} keeps working {until}")


@app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key: Annotated[str, typer.Option("--key", "-k", help="The publishable key to revoke.")],
    platform: PlatformOption = None,
    user: UserOption = None,
    force: Annotated[bool, typer.Option("--force", help="Revoke even the platform's last active pair.")] = False,
    yes: YesOption = False,
    plan: PlanOption = False,
    json_flag: JsonOption = False,
) -> None:
    """Remove the pair's mappings from both namespaces at once (its secret stops authenticating first).

    It cannot be undone: asks on a terminal, refuses without one unless --yes; --plan shows the keys it would delete.
    Refuses the platform's last active pair without --force. Example: dream keys revoke -u dev@example.com -k pk_live_... --yes
    """
    run = app_context(ctx)
    now = run.store().clock()
    platform_id = _platform(ctx, platform, user)
    doomed = key_ops.revocation_keys(run.store(), platform_id, key)
    if plan:
        if run.wants_json(json_flag):
            print_json({"schemaVersion": 1, "action": "revoke", "publishableKey": key, "deletes": doomed})
        else:
            for namespace, name in doomed:
                typer.echo(f"delete\t{namespace}\t{name}")
        return
    confirm_change(f"revoke {key} of {platform_id} (its secret key stops working at once)?", yes)
    revoked = key_ops.revoke_key(run.store(), platform_id, key, force=force, now=now)
    if run.wants_json(json_flag):
        print_json(revoked.as_json(now))
        return
    status(f"revoked {key}")
