"""`dream flow`: the guide's onboarding, phase by phase or all at once, on the embedded emulator by default."""

from pathlib import Path
from typing import Annotated, Any

import typer

from dreamcli.cli.context import (
    JsonOption,
    LazyModule,
    PlanOption,
    app_context,
    clock_from_env,
    print_json,
    status,
    stdout_console,
)
from dreamcli.errors import UsageError
from dreamcli.vendors.settings import Vendors

onboarding = LazyModule("dreamcli.platform.onboarding")
developers = LazyModule("dreamcli.platform.developers")
flow_runner = LazyModule("dreamcli.platform.flow_run")
tiers_file = LazyModule("dreamcli.platform.tiers")
FAULTS = ("skip-api-replication",)  # dreamcli.platform.flow_run.FAULTS (tested to agree)

app = typer.Typer(
    help=(
        "Drive the onboarding flow: signup -> pay -> connect -> tiers -> credentials.\n\n"
        "Example: dream flow run   (a fresh developer through every phase, then an authenticated call)"
    ),
    no_args_is_help=True,
)


def default_tiers() -> Path:
    """The guide's three tiers: inside the package when installed (a wheel), from the source tree otherwise."""
    here = Path(__file__).resolve().parents[1]
    packaged = here / "data" / "guide-tiers.toml"
    return packaged if packaged.is_file() else here.parent / "fixtures" / "tiers" / "guide.toml"


TiersOption = Annotated[
    Path | None,
    typer.Option(
        "--tiers", "--file", "-f", help="Tier config (TOML).", show_default="the guide's free, pro and enterprise"
    ),
]
UserOption = Annotated[str, typer.Option("--user", "-u", help="The developer: Clerk user id or email.")]


def _emulated(vendors: Vendors) -> bool:
    return vendors.settings.source == "emulator"


@app.command("signup")
def flow_signup(
    ctx: typer.Context,
    email: Annotated[str | None, typer.Option("--email", help="A new (or returning) developer's email.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="An existing Clerk user id.")] = None,
    json_flag: JsonOption = False,
) -> None:
    """Phase 1: the developer in Clerk's dream-api app and a platform id (plt_...), stored both ways.

    Running it again returns the same platform id. Example: dream flow signup --email dev@example.com
    """
    run = app_context(ctx)
    result = onboarding.signup(run.store(create=True), run.vendors(create=True), email=email, user_id=user)
    if run.wants_json(json_flag):
        print_json(
            {
                "userId": result.user_id,
                "platformId": result.platform_id,
                "new": result.new_platform,
                "wrote": result.writes,
            }
        )
        return
    typer.echo(f"{result.user_id}\t{result.platform_id}")
    status("new platform id" if result.new_platform else "already signed up: same platform id")


@app.command("pay")
def flow_pay(ctx: typer.Context, user: UserOption, json_flag: JsonOption = False) -> None:
    """Phase 2: the $15/month checkout; its signed webhook sets the plan to paid.

    On the emulator the checkout is paid at once. Example: dream flow pay --user dev@example.com
    """
    run = app_context(ctx)
    vendors = run.vendors(create=True)
    user_id = developers.user_id_of(vendors, user)
    checkout = onboarding.start_payment(run.store(create=True), vendors, user_id)
    if not _emulated(vendors):
        status("pay at this URL, then check with `dream flow status`:")
        typer.echo(checkout.url)
        return
    onboarding.pay_in_emulator(vendors, checkout)
    plan = "paid"
    if run.wants_json(json_flag):
        print_json({"userId": user_id, "checkoutSession": checkout.session_id, "plan": plan})
        return
    typer.echo(f"{user_id}\tplan {plan}")


@app.command("connect")
def flow_connect(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", "-u", help="The developer: Clerk user id or email.")] = None,
    code: Annotated[str | None, typer.Option("--code", help="Finish by hand: the callback's code.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="Finish by hand: the callback's state.")] = None,
    deny: Annotated[bool, typer.Option("--deny", help="Emulator: decline on the consent screen.")] = False,
    json_flag: JsonOption = False,
) -> None:
    """Phase 3: Stripe Connect OAuth with a single-use state; the token is stored for user and platform.

    Refused before payment. Example: dream flow connect --user dev@example.com
    """
    run = app_context(ctx)
    vendors = run.vendors(create=True)
    store = run.store(create=True)
    if code is not None or state is not None:
        result = onboarding.connect_callback(store, vendors, code=code, state=state)
    else:
        if user is None:
            raise UsageError("give --user (or --code and --state to finish a callback by hand)")
        url, _ = onboarding.connect_start(store, vendors, developers.user_id_of(vendors, user))
        if not _emulated(vendors):
            status(
                "open this URL, authorize, then run `dream flow connect --code ... --state ...` with the callback's values:"
            )
            typer.echo(url)
            return
        answer = onboarding.consent_in_emulator(vendors, url, deny=deny)
        result = onboarding.connect_callback(
            store, vendors, code=answer.get("code"), state=answer.get("state"), error=answer.get("error")
        )
    if run.wants_json(json_flag):
        print_json(
            {
                "userId": result.user_id,
                "platformId": result.platform_id,
                "stripeUserId": result.stripe_user_id,
                "wrote": result.writes,
            }
        )
        return
    typer.echo(f"{result.user_id}\t{result.stripe_user_id}")


@app.command("tiers")
def flow_tiers(
    ctx: typer.Context,
    user: UserOption,
    file: TiersOption = None,
    force: Annotated[bool, typer.Option("--force", help="Remove tiers even while customers are on them.")] = False,
    mimic_plaintext_secret: Annotated[
        bool,
        typer.Option(
            "--mimic-plaintext-secret", help="Also write user:{u}:secretKey in plaintext, as the guide does (insecure)."
        ),
    ] = False,
    fault: Annotated[str | None, typer.Option("--fault", help="Inject a known fault: skip-api-replication.")] = None,
    plan: PlanOption = False,
    json_flag: JsonOption = False,
) -> None:
    """Phase 4: products + monthly prices on the connected account, keys, and the guide's KV writes.

    --plan says, tier by tier, what it would do (create, reprice, keep, retire, a new key pair), changing nothing.

    Re-running with a changed file updates products, prices and tierConfig and keeps the keys.
    The secret key is printed once, here, when it is created. Example: dream flow tiers -u dev@example.com -f fixtures/tiers/guide.toml
    """
    from rich.table import Table

    if fault is not None and fault not in FAULTS:
        raise UsageError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
    tiers = tiers_file.parse_tiers(file or default_tiers())
    run = app_context(ctx)
    vendors = run.vendors(create=True)
    if plan:
        steps = onboarding.plan_tiers(run.store(), vendors, developers.user_id_of(vendors, user), tiers)
        if run.wants_json(json_flag):
            print_json({"actions": steps})
            return
        for step in steps:
            amount = f"\t{step['unitAmount']} {step['currency']}" if "unitAmount" in step else ""
            if "customers" in step:  # a retired tier: who is on it (unknown when D1 cannot say now)
                on = step["customers"]
                amount = f"\t{'unknown number of' if on is None else on} customers on it"
            typer.echo(f"{step['action']}\t{step['tier'] or '-'}{amount}")
        return
    result = onboarding.configure_tiers(
        run.store(create=True),
        vendors,
        developers.user_id_of(vendors, user),
        tiers,
        force=force,
        mimic_plaintext_secret=mimic_plaintext_secret,
        skip_api_replication=fault == "skip-api-replication",
        store_now=run.store().clock,
    )
    if mimic_plaintext_secret and result.secret_key:
        status(
            "warning: wrote user:{u}:secretKey in plaintext as the guide does (--mimic-plaintext-secret); `dream kv verify` reports it"
        )
    if run.wants_json(json_flag):
        data: dict[str, Any] = {
            "userId": result.user_id,
            "platformId": result.platform_id,
            "publishableKey": result.publishable_key,
            "products": result.products,
            "archived": result.archived,
            "wrote": result.writes,
        }
        if result.secret_key:
            data["secretKey"] = result.secret_key
        print_json(data)
        return
    table = Table("tier", "product", "price")
    for product in result.products:
        table.add_row(product["tier"], product["productId"], product["priceId"])
    stdout_console().print(table)
    typer.echo(f"publishable key: {result.publishable_key}")
    if result.secret_key:
        typer.echo(f"secret key:      {result.secret_key}")
        status("the secret key is shown only now; it is stored as its SHA-256")
    else:
        status("keys kept: the existing pair still works")


@app.command("credentials")
def flow_credentials(ctx: typer.Context, user: UserOption, json_flag: JsonOption = False) -> None:
    """Phase 5: what the credentials page shows: publishable key, price ids, platform id (never the secret).

    Example: dream flow credentials --user dev@example.com --json
    """
    run = app_context(ctx)
    data = onboarding.credentials(run.store(), developers.user_id_of(run.vendors(), user))
    if run.wants_json(json_flag):
        print_json(data)
        return
    typer.echo(f"platform id:     {data['platformId']}")
    typer.echo(f"publishable key: {data['publishableKey']}")
    for product in data["products"]:
        typer.echo(f"{product['tier']}:\t{product['priceId']}\t{product['productId']}")
    status(f"secret key: {data['secretKeyNote']}")


@app.command("status")
def flow_status(ctx: typer.Context, json_flag: JsonOption = False) -> None:
    """Where every developer in the store is in the flow, and what comes next.

    Example: dream flow status
    """
    from rich.table import Table

    run = app_context(ctx)
    rows = onboarding.status(run.store(), run.vendors())
    if run.wants_json(json_flag):
        print_json({"developers": rows})
        return
    table = Table("developer", "platform", *onboarding.PHASES, "next")
    for row in rows:
        marks = ["yes" if row["phases"][p] else "?" if row["phases"][p] is None else "no" for p in onboarding.PHASES]
        table.add_row(row["userId"], row["platformId"], *marks, row["next"] or "done")
    stdout_console().print(table)
    if not rows:
        status("no developers yet: dream flow signup --email you@example.com")


@app.command("run")
def flow_run(
    ctx: typer.Context,
    email: Annotated[str | None, typer.Option("--email", help="The developer (default: a fresh one).")] = None,
    file: TiersOption = None,
    fault: Annotated[str | None, typer.Option("--fault", help="Inject a known fault: skip-api-replication.")] = None,
    mimic_plaintext_secret: Annotated[
        bool, typer.Option("--mimic-plaintext-secret", help="Write the plaintext secret as the guide does.")
    ] = False,
    workers: Annotated[
        bool,
        typer.Option(
            "--workers",
            help="Drive the running workers (`dream dev`) over HTTP instead of dream's model of them; then verify "
            "the KV they wrote (with --store wrangler:PROJECT...).",
        ),
    ] = False,
    urls: Annotated[
        str | None,
        typer.Option(
            "--urls",
            help="With --workers: front-auth-api=URL,oauth-api=URL,api-multi=URL (default: dream.toml's [workers] "
            "ports, else :8788, :8789, :8787).",
        ),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="With --workers: print every request the flow will make (route, auth, fields, statuses, the guide's "
            "words for it), changing nothing.",
        ),
    ] = False,
    json_flag: JsonOption = False,
) -> None:
    """A fresh developer through every phase, then an authenticated call the way api-multi makes it.

    Prints a step table (phase, what was written, time) and exits 0 only if every step passed.
    --fault skip-api-replication reproduces the guide's "Invalid API key". Example: dream flow run

    With --workers the phases go through the workers' own routes, as `dream dev` runs them (signup with a Clerk
    session token, the checkout front-auth-api creates and the webhook it receives, oauth-api's authorize and
    callback, /create-products, /get-credentials, the guide's curl against api-multi), then verify checks the KV
    they wrote. Example: dream flow run --workers --store wrangler:fixtures/workers,persist-to=.wrangler-shared

    The requests are the guide's (README, "The workers' contract"); routes that differ are declared in dream.toml's
    [workers.routes] (e.g. checkout = "POST /billing/checkout"). --explain prints them. Example: dream flow run
    --workers --explain
    """
    from rich.table import Table

    if fault is not None and fault not in FAULTS:
        raise UsageError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
    tiers = tiers_file.parse_tiers(file or default_tiers())
    run = app_context(ctx)
    if explain:
        _explain_contract(run, urls, json_flag)
        return
    if workers or urls:
        if fault or mimic_plaintext_secret:
            raise UsageError("--fault and --mimic-plaintext-secret change dream's model; the workers are what they are")
        report = _flow_over_http(run, tiers, email, urls)
    else:
        vendors = run.vendors(create=True)
        if not _emulated(vendors):
            raise UsageError(
                "`dream flow run` pays and consents on the emulator's screens; with real vendors run the steps one by one"
            )
        report = flow_runner.run_flow(
            run.store(create=True),
            vendors,
            tiers,
            email=email,
            fault=fault,
            mimic_plaintext_secret=mimic_plaintext_secret,
            clock=clock_from_env(),
        )
    if run.wants_json(json_flag):
        print_json(report.as_json())
    else:
        table = Table("phase", "result", "ms", "what was written (or done)")
        table.columns[3].overflow = "fold"
        for step in report.steps:
            wrote = "\n".join(step.wrote) if step.wrote else step.detail
            table.add_row(step.phase, "[green]ok[/green]" if step.ok else "[red]FAILED[/red]", f"{step.ms:.0f}", wrote)
        stdout_console().print(table)
        if report.secret_key:
            typer.echo(f"secret key (shown once): {report.secret_key}")
    if not report.ok:
        raise onboarding.FlowFailed(report.failure or "a step failed")
    status(f"all {len(report.steps)} steps passed in {report.total_ms:.0f} ms")


def _workers_config(run: Any) -> Any:
    """dream.toml's [workers]: the project's (a wrangler store's folder) first, else the nearest to here."""
    from dreamcli.cli.context import parse_store_spec
    from dreamcli.stores.wrangler import parse_spec
    from dreamcli.workers_config import load_workers_config

    kind, where = parse_store_spec(run.store_spec)
    starts = [parse_spec(where).root] if kind == "wrangler" and where else []
    return load_workers_config(*starts, Path.cwd())


def _explain_contract(run: Any, urls: str | None, json_flag: bool) -> None:
    from dreamcli.platform.contract import contract
    from dreamcli.platform.flow_http import parse_workers

    config = _workers_config(run)
    bases = parse_workers(urls, config)
    routes = contract(config).values()
    if run.wants_json(json_flag):
        source = str(config.source) if config.source else None
        print_json({"dreamToml": source, "requests": [r.as_json(bases[r.worker]) for r in routes]})
        return
    for number, route in enumerate(routes, 1):
        sends = [f"?{'&'.join(f'{q}=' for q in route.query)}"] if route.query else []
        sends += [f"body {{{', '.join(route.body)}}}"] if route.body else []
        sends += list(route.headers)
        expects = " or ".join(map(str, route.expect)) + (f"; reads {route.reads}" if route.reads else "")
        typer.echo(f"{number}. {route.phase}: {route.step}  ({route.worker})")
        typer.echo(f"   {route.method} {bases[route.worker]}{route.path}")
        for label, text in (
            ("called by", "" if route.caller == "dream" else route.caller),
            ("auth", route.auth),
            ("sends", ", ".join(sends)),
            ("expects", expects),
            ("checks", route.checks),
            ("source", route.source),
        ):
            if text:
                typer.echo(f"   {label + ':':<10} {text}")
    status(
        f"routes from {config.source}"
        if config.source and config.routes
        else "the guide's routes (no [workers.routes])"
    )


def _flow_over_http(run: Any, tiers: Any, email: str | None, urls: str | None) -> Any:
    import httpx

    from dreamcli.cli.context import parse_store_spec
    from dreamcli.platform.contract import contract
    from dreamcli.platform.flow_http import HttpFlow, parse_workers

    config = _workers_config(run)
    emulator = run.emulator("dream flow run --workers", create=True)
    kind, _ = parse_store_spec(run.store_spec)
    store = run.store() if kind == "wrangler" else None
    if store is None:
        status("no verify at the end: give --store wrangler:PROJECT[,persist-to=...] (what `dream dev` printed)")
    with httpx.Client(timeout=60.0) as http:
        flow = HttpFlow(parse_workers(urls, config), emulator, store, http, contract(config), run.store_spec)
        return flow.run(tiers, email)


@app.command("call")
def flow_call(ctx: typer.Context, json_flag: JsonOption = False) -> None:
    """Authenticate a secret key the way api-multi does (secret -> hash -> publishable key -> platform ->
    tier config), reading the secret from stdin so it stays out of shell history and process lists.

    Exits 1 with the guide's "Invalid API key", naming the missing key. Example: echo "$SK" | dream flow call
    """
    import sys

    from dreamcli.platform.runtime import authenticate

    if sys.stdin is None or sys.stdin.isatty():
        from dreamcli.cli.context import read_secret

        secret = read_secret("secret key")
    else:
        secret = typer.get_text_stream("stdin").read().strip()
    caller = authenticate(app_context(ctx).store(), secret)
    tiers = [tier.get("name") for tier in caller.tier_config.get("tiers", [])]
    if app_context(ctx).wants_json(json_flag):
        print_json(
            {"ok": True, "publishableKey": caller.publishable_key, "platformId": caller.platform_id, "tiers": tiers}
        )
        return
    typer.echo(f"ok\t{caller.publishable_key}\t{caller.platform_id}\t{','.join(tiers)}")
