"""`dream kv`: read and write Workers KV namespaces with Cloudflare's semantics."""

import base64
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dreamcli import layout
from dreamcli.cli.context import (
    DEFAULT_STORE,
    JsonOption,
    LazyModule,
    PlanOption,
    YesOption,
    app_context,
    confirm_change,
    plural,
    print_json,
    print_json_lines,
    print_json_streamed,
    progress_line,
    status,
    stdin_is_tty,
)
from dreamcli.errors import ExitCode, KeyNotFound, UsageError
from dreamcli.platform.replication.findings import FindingClass
from dreamcli.stores import kv_rules
from dreamcli.stores.ports import KVValue, iter_keys, iter_pages

onboarding = LazyModule("dreamcli.platform.onboarding")
replication = LazyModule("dreamcli.platform.replication")
if TYPE_CHECKING:
    from dreamcli.platform.replication import VerifyResult

app = typer.Typer(
    help=(
        "Read and write the KV namespaces (platform-tokens, platform-usage, api-tokens, api-usage).\n\n"
        "Example: dream kv get 'publishablekey:pk_live_x:platformId' --ns api-tokens"
    ),
    no_args_is_help=True,
)

NAMESPACE_NAMES = ("platform-tokens", "platform-usage", "api-tokens", "api-usage")


def _complete(values: tuple[str, ...]) -> Any:
    """Shell completion of an option's values (`dream --install-completion`)."""

    def complete(incomplete: str) -> list[str]:
        return [value for value in values if value.startswith(incomplete)]

    return complete


NsOption = Annotated[
    str,
    typer.Option(
        "--ns",
        "-n",
        help="Namespace: logical name (platform-tokens, api-tokens, ...) or namespace id.",
        autocompletion=_complete(NAMESPACE_NAMES),
    ),
]
RevealOption = Annotated[
    bool, typer.Option("--reveal", help="Print values the schema marks as secret (plaintext keys, Stripe tokens).")
]


def _value_json(value: bytes) -> dict[str, Any]:
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_base64": base64.b64encode(value).decode("ascii")}


def _is_secret(key: str, namespace: str) -> bool:
    parsed = layout.parse(key, namespace)
    return parsed.spec is not None and parsed.spec.secret


def _entry_json(key: str, namespace: str, found: KVValue, reveal: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": key, "namespace": namespace}
    if _is_secret(key, namespace) and not reveal:
        entry["redacted"] = True
    else:
        entry.update(_value_json(found.value))
    entry["metadata"] = found.metadata
    entry["expiration"] = found.expiration
    return entry


@app.command("get")
def kv_get(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key to read.")],
    ns: NsOption,
    json_flag: JsonOption = False,
    reveal: RevealOption = False,
) -> None:
    """Print a value (raw bytes on stdout; binary safe).

    Example: dream kv get 'user:user_1:platformId' --ns platform-tokens
    """
    run = app_context(ctx)
    namespace = run.store().kv(ns)
    found = namespace.get_with_metadata(key)
    if found is None:
        raise KeyNotFound(f"key {key!r} not found in {ns}")
    if _is_secret(key, ns) and not reveal:
        raise UsageError(f"{key!r} holds a secret; pass --reveal to print it")
    if run.wants_json(json_flag):
        print_json(_entry_json(key, ns, found, reveal))
        return
    out = typer.get_binary_stream("stdout")
    out.write(found.value)
    if typer.get_text_stream("stdout").isatty() and not found.value.endswith(b"\n"):
        out.write(b"\n")
    out.flush()


def _read_value(value: str | None, file: Path | None) -> bytes:
    if value is not None and file is not None:
        raise UsageError("give the value as an argument or with --file, not both")
    if file is not None:
        try:
            return file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --file {file}: {exc.strerror}") from None
    if value is not None and value != "-":
        return value.encode("utf-8")
    if value is None and stdin_is_tty():
        raise UsageError("no value: give it as an argument, with --file, or on stdin")
    return typer.get_binary_stream("stdin").read()


def _parse_metadata(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--metadata is not valid JSON: {exc.msg} at column {exc.colno}") from None


@app.command("put")
def kv_put(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key to write.")],
    ns: NsOption,
    value: Annotated[str | None, typer.Argument(help="The value; '-' or nothing reads stdin.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read the value from this file.")] = None,
    metadata: Annotated[str | None, typer.Option("--metadata", help="Metadata as JSON (<= 1024 bytes).")] = None,
    ttl: Annotated[int | None, typer.Option("--ttl", help="Expire after this many seconds (>= 60).")] = None,
    expiration: Annotated[
        int | None, typer.Option("--expiration", help="Expire at this Unix time in seconds (>= now + 60).")
    ] = None,
) -> None:
    """Write one value (from an argument, --file or stdin).

    Example: echo -n plt_abc | dream kv put 'user:user_1:platformId' --ns platform-tokens --ttl 3600
    """
    data = _read_value(value, file)
    meta = _parse_metadata(metadata)
    namespace = app_context(ctx).store(create=True).kv(ns)
    namespace.put(key, data, expiration=expiration, expiration_ttl=ttl, metadata=meta)
    status(f"wrote {key!r} to {ns} ({plural(len(data), 'byte')})")


@app.command("delete")
def kv_delete(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key to delete.")],
    ns: NsOption,
) -> None:
    """Delete one key (deleting a missing key succeeds, as in Cloudflare).

    Example: dream kv delete 'oauth:state:abc' --ns platform-tokens
    """
    namespace = app_context(ctx).store().kv(ns)
    listed = namespace.list(prefix=key, limit=10).keys  # whether it is there, without reading its value
    existed = bool(listed) and listed[0].name == key
    namespace.delete(key)
    status(f"deleted {key!r} from {ns}" if existed else f"{key!r} was not in {ns}; nothing to delete")


def _listed_json(entry: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"name": entry.name}
    if entry.expiration is not None:
        item["expiration"] = entry.expiration
    if entry.metadata is not None:
        item["metadata"] = entry.metadata
    return item


@app.command("list")
def kv_list(
    ctx: typer.Context,
    ns: NsOption,
    prefix: Annotated[str, typer.Option("--prefix", help="Only keys starting with this.")] = "",
    limit: Annotated[int, typer.Option("--limit", help="Keys per page, 10..1000.")] = 1000,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Continue from a previous page.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow cursors to the end (streamed).")] = False,
    json_flag: JsonOption = False,
) -> None:
    """List key names in UTF-8 byte order, one page or --all.

    Example: dream kv list --ns api-tokens --prefix 'secretkey:' --all
    """
    run = app_context(ctx)
    namespace = run.store().kv(ns)
    as_json = run.wants_json(json_flag)
    if all_pages:
        if cursor is not None:
            raise UsageError("--all starts from the beginning; drop --cursor")
        kv_rules.validate_list_limit(limit)
        if as_json:
            print_json_lines(_listed_json(entry) for entry in iter_keys(namespace, prefix=prefix, page_size=limit))
            return
        out = typer.get_binary_stream("stdout")
        for page in iter_pages(namespace, prefix=prefix, page_size=limit):
            if page.keys:  # one write per page: a syscall per key would dominate
                out.write("".join(f"{entry.name}\n" for entry in page.keys).encode("utf-8"))
        out.flush()
        return
    page = namespace.list(prefix=prefix, cursor=cursor, limit=limit)
    if as_json:
        print_json(
            {
                "keys": [_listed_json(entry) for entry in page.keys],
                "list_complete": page.list_complete,
                "cursor": page.cursor,
            }
        )
        return
    for entry in page.keys:
        typer.echo(entry.name)
    if not page.list_complete:
        status(f"more keys follow: --cursor {page.cursor}")


def _load_json_file(source: str, what: str) -> Any:
    try:
        raw = typer.get_binary_stream("stdin").read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {source}: {exc.strerror}") from None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else exc
        raise UsageError(f"{what} {source} is not valid JSON: {detail}") from None


@app.command("bulk-put")
def kv_bulk_put(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="JSON file in Cloudflare's bulk format, or '-' for stdin.")],
    ns: NsOption,
    plan: PlanOption = False,
) -> None:
    """Write many pairs; the whole file is checked before anything is written. --plan checks it and lists each key
    as `new` or `replace` (a value already there), writing nothing.

    The file is Cloudflare's bulk format: [{"key", "value", "expiration"?, "expiration_ttl"?, "metadata"?,
    "base64"?}]. Files over 10,000 pairs are written in 10,000-pair transactions.

    Example: dream kv bulk-put pairs.json --ns api-tokens
    """
    from dreamcli.stores.bulk import check_all, parse_bulk_items, presence, write_in_batches

    items = parse_bulk_items(_load_json_file(source, "bulk file"), what="bulk file")
    store = app_context(ctx).store(create=not plan)
    check_all(items, now=store.clock())
    namespace = store.kv(ns)
    if plan:
        for key, there in presence(namespace, [item.key for item in items]):
            typer.echo(f"{'replace' if there else 'new'}\t{key}")
        return

    line = progress_line("writing", len(items)) if len(items) > kv_rules.MAX_BULK_WRITE else None
    written = write_in_batches(namespace, items, on_batch=None if line is None else lambda done, _: line(done))
    if line is not None:
        typer.echo("", err=True)  # end the progress line
    status(f"wrote {plural(written, 'key')} to {ns}")


def _keys_from(keys: list[str], file: str | None) -> list[str]:
    if file is not None:
        data = _load_json_file(file, "keys file")
        if not isinstance(data, list) or not all(isinstance(key, str) for key in data):
            raise UsageError(f"keys file {file} must hold a JSON array of strings")
        keys = [*keys, *data]
    if not keys:
        raise UsageError("no keys: give them as arguments or with --file")
    return keys


@app.command("bulk-get")
def kv_bulk_get(
    ctx: typer.Context,
    ns: NsOption,
    keys: Annotated[list[str] | None, typer.Argument(help="Keys to read.")] = None,
    file: Annotated[str | None, typer.Option("--file", "-f", help="JSON array of keys ('-' for stdin).")] = None,
    json_flag: JsonOption = False,
    reveal: RevealOption = False,
) -> None:
    """Read many keys at once (100 per request, as Cloudflare); missing keys are null.

    Example: dream kv bulk-get 'user:u1:platformId' 'user:u2:platformId' --ns platform-tokens --json
    """
    run = app_context(ctx)
    wanted = _keys_from(keys or [], file)
    for key in wanted:
        kv_rules.validate_key(key)
    namespace = run.store().kv(ns)
    values: dict[str, Any] = {}
    for start in range(0, len(wanted), kv_rules.MAX_BULK_GET):
        chunk = wanted[start : start + kv_rules.MAX_BULK_GET]
        for key, found in namespace.bulk_get(chunk).items():
            values[key] = None if found is None else _entry_json(key, ns, found, reveal)
    if run.wants_json(json_flag):
        print_json({"values": values})
        return
    for key, entry in values.items():
        if entry is None:
            shown = "(missing)"
        elif entry.get("redacted"):
            shown = "(secret: --reveal to print)"
        else:
            shown = entry.get("value", f"(binary, base64 {entry.get('value_base64')})")
        typer.echo(f"{key}\t{shown}")


@app.command("bulk-delete")
def kv_bulk_delete(
    ctx: typer.Context,
    ns: NsOption,
    keys: Annotated[list[str] | None, typer.Argument(help="Keys to delete.")] = None,
    file: Annotated[str | None, typer.Option("--file", "-f", help="JSON array of keys ('-' for stdin).")] = None,
    yes: YesOption = False,
    plan: PlanOption = False,
) -> None:
    """Delete many keys (10,000 per transaction); missing keys are fine.

    It cannot be undone: asks on a terminal, refuses without one unless --yes; --plan lists the keys present that
    it would delete. Example: dream kv bulk-delete --file stale-keys.json --ns api-tokens --yes
    """
    wanted = _keys_from(keys or [], file)
    for key in wanted:
        kv_rules.validate_key(key)
    namespace = app_context(ctx).store().kv(ns)
    if plan:
        from dreamcli.stores.bulk import presence

        for key, there in presence(namespace, wanted):
            if there:
                typer.echo(key)
        return
    confirm_change(f"delete {plural(len(wanted), 'key')} from {ns}?", yes)
    line = progress_line("deleting", len(wanted)) if len(wanted) > kv_rules.MAX_BULK_DELETE else None
    for start in range(0, len(wanted), kv_rules.MAX_BULK_DELETE):
        namespace.bulk_delete(wanted[start : start + kv_rules.MAX_BULK_DELETE])
        if line is not None:
            line(min(start + kv_rules.MAX_BULK_DELETE, len(wanted)))
    if line is not None:
        typer.echo("", err=True)  # end the progress line
    status(f"deleted {plural(len(wanted), 'key')} from {ns}")


@app.command("explain")
def kv_explain(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Any key, e.g. 'secretkey:<sha256>:publishableKey'.")],
    ns: Annotated[str | None, typer.Option("--ns", "-n", help="Look only in this namespace.")] = None,
    json_flag: JsonOption = False,
) -> None:
    """Say which guide mapping a key belongs to, where it lives, and what it points at.

    Example: dream kv explain 'publishablekey:pk_live_x:platformId'
    """
    run = app_context(ctx)
    from dreamcli.platform.explain import explain_key

    report = explain_key(run.store(), key, ns)
    if run.wants_json(json_flag):
        print_json(report)
        return
    from dreamcli.cli.render import render_explain

    render_explain(report)


CLASS_NAMES = tuple(str(kind) for kind in FindingClass)


LONG_SCAN_S = 180  # a REST scan longer than this at the rate limit suggests --via-worker


class _ScanReport:
    """What a long scan of one namespace tells (dreamcli.stores.ports.ScanObserver), on stderr: before a REST scan's
    long part its size, the requests it needs and how long they take at the rate limit (the token can do little else
    meanwhile), and the Worker when that is minutes; the verifier Worker's shards as they finish (on a terminal)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def listed(self, keys: int, reads: int, seconds: float) -> None:
        if seconds < 1:
            at_limit = "within the rate limit's window"
        elif seconds < 120:
            at_limit = f"about {seconds:.0f} s at the rate limit"
        else:
            at_limit = f"about {seconds / 60:.0f} min at the rate limit"
        status(f"{self.name}: {keys:,} keys: {reads:,} bulk reads, {at_limit}")
        if seconds > LONG_SCAN_S:
            status(
                "  --via-worker reads it inside Cloudflare instead (a Worker deployed for the run, deleted after): "
                "minutes fewer, and the token's rate limit left alone"
            )

    def shards(self, done: int, total: int, keys: int) -> None:
        if not sys.stderr.isatty():
            return
        sys.stderr.write(f"\r{self.name}: {done}/{total} shards, {keys:,} keys   ")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _report_long_scans(store: Any) -> None:
    """Every token namespace's scan tells how it goes, where its store's scans are long enough to say anything."""
    from dreamcli.topology import API_TOKENS, PLATFORM_TOKENS

    for name in (PLATFORM_TOKENS, API_TOKENS):
        store.kv(name).scan_observer = _ScanReport(name)


def _check_classes(classes: list[str] | None) -> None:
    for name in classes or []:
        if name not in CLASS_NAMES:
            raise UsageError(f"unknown class {name!r} (known: {', '.join(CLASS_NAMES)})")


@contextmanager
def _scanning_store(ctx: typer.Context, via_worker: bool, keep_worker: bool, parallel: int | None) -> Iterator[Any]:
    """The store verify reads: the chosen one, or with --via-worker the same one read through dream's verifier
    Worker (deployed for the run and deleted after on Cloudflare; under `wrangler dev` on wrangler's state)."""
    if not via_worker and (keep_worker or parallel is not None):
        raise UsageError("--keep-worker and --parallel go with --via-worker")
    run = app_context(ctx)
    store = run.store()
    if not via_worker:
        yield store
        return
    from dreamcli.stores.verifier import read_through_worker

    # A kept verifier waits for the next run beside the default store (0600).
    kept_in = Path(DEFAULT_STORE.partition(":")[2]).parent
    with read_through_worker(
        store, environ=run.environ, keep=keep_worker, parallel=parallel, kept_in=kept_in, log=status
    ) as through:
        yield through


ViaWorkerOption = Annotated[
    bool,
    typer.Option(
        "--via-worker",
        help="Read the token namespaces inside Cloudflare through a verifier Worker deployed for this run (deleted "
        "after): hundreds of Worker invocations instead of thousands of rate-limited REST requests. On wrangler's "
        "state it runs under `wrangler dev` over the same folder.",
    ),
]
KeepWorkerOption = Annotated[
    bool,
    typer.Option(
        "--keep-worker",
        help="With --via-worker: leave the deployed verifier in place for the next --via-worker run, which reuses "
        "it (its address and secret in .dream/, 0600) and deletes it unless kept again.",
    ),
]
ParallelOption = Annotated[
    int | None,
    typer.Option("--parallel", min=1, max=64, help="With --via-worker: shards read at once (8 deployed, 2 locally)."),
]


UsageCheckOption = Annotated[
    bool | None,
    typer.Option(
        "--usage/--no-usage",
        help="Also check api-usage's counts (each end-user's month, the rate buckets) that api-multi reads on every "
        "call.",
        show_default="on, except on the cloudflare store (it reads every usage record through the paced REST API)",
    ),
]


def _verify(
    ctx: typer.Context,
    store: Any,
    platform: str | None,
    classes: list[str] | None,
    stripe: bool,
    usage: bool | None = None,
) -> "VerifyResult":
    run = app_context(ctx)
    if platform is not None:
        from dreamcli.platform.developers import require_platform

        require_platform(store, platform)
    check = None
    if stripe:
        vendors = run.vendors()
        check = replication.stripe_agreement(store, onboarding.tier_configs_from_stripe(store, vendors))
    _report_long_scans(store)
    progress = progress_line("verifying", replication.keys_to_read(store))
    result = replication.verify(
        store,
        on_progress=progress,
        stripe_check=check,
        now=store.clock(),
        usage=usage,
        on_tick=None if progress is None else progress.tick,
    )
    if progress is not None:
        typer.echo("", err=True)
    return replication.select(result, platform=platform, classes=classes)


@app.command("verify")
def kv_verify(
    ctx: typer.Context,
    platform: Annotated[
        str | None, typer.Option("--platform", "-p", help="Only findings about this platform id.")
    ] = None,
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--class",
            help=f"Only these classes ({', '.join(CLASS_NAMES)}); repeatable.",
            autocompletion=_complete(CLASS_NAMES),
        ),
    ] = None,
    stripe: Annotated[
        bool, typer.Option("--stripe", help="Also compare tier configs with Stripe's products and prices.")
    ] = False,
    usage: UsageCheckOption = None,
    via_worker: ViaWorkerOption = False,
    keep_worker: KeepWorkerOption = False,
    parallel: ParallelOption = None,
    json_flag: JsonOption = False,
) -> None:
    """Check the replication between platform-tokens and api-tokens, and the counts api-multi reads in api-usage;
    exit 1 when anything is found.

    Invariants: user <-> platform mappings point at each other; every publishablekey:/secretkey: mapping is in
    both namespaces with the same value, and nothing is in api-tokens without its source; each platform's
    tierConfig agrees with its products (and Stripe, with --stripe); both Stripe tokens agree; no mapping points
    nowhere; values are the expected JSON; no plaintext secret keys; every usage record and rate bucket is what
    api-multi writes (a corrupt one makes that end-user's every call a 409).

    JSON: {"clean", "summary": {"keys_scanned", "findings", "by_class"}, "findings": [{"class", "namespace",
    "key", "platform", "message", "expected", "actual", "repair": {"action", "needs"} | null}]}.

    Through a Worker (--via-worker), values the key schema marks secret never leave Cloudflare: their digests do,
    and the findings and JSON are the same.

    Example: dream kv verify --class missing --json

    Example: dream --store cloudflare kv verify --via-worker --json
    """
    run = app_context(ctx)
    _check_classes(classes)
    with _scanning_store(ctx, via_worker, keep_worker, parallel) as store:
        result = _verify(ctx, store, platform, classes, stripe, usage)
    if run.wants_json(json_flag):
        document = result.as_json(findings=False)
        print_json_streamed(document, "findings", (finding.as_json() for finding in result.findings))
    else:
        from dreamcli.cli.render import render_findings

        render_findings(result)
    if not result.clean:
        raise typer.Exit(int(ExitCode.FAILED))


@app.command("repair")
def kv_repair(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply the plan without asking.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Also delete orphaned keys.")] = False,
    remove_plaintext_secrets: Annotated[
        bool, typer.Option("--remove-plaintext-secrets", help="Delete the guide's plaintext user:{u}:secretKey values.")
    ] = False,
    reset_corrupt_usage: Annotated[
        bool,
        typer.Option(
            "--reset-corrupt-usage",
            help="Delete corrupt usage records (that end-user's count for the month starts again at 0).",
        ),
    ] = False,
    platform: Annotated[str | None, typer.Option("--platform", "-p", help="Only repair this platform id.")] = None,
    usage: UsageCheckOption = None,
    plan_only: Annotated[
        bool, typer.Option("--plan", help="Only show the plan (on stdout; --json too) and exit 0; change nothing.")
    ] = False,
    merge_into: Annotated[
        Path | None,
        typer.Option(
            "--merge-into",
            help="wrangler store: copy every worker's local state into one shared --persist-to folder (relative to "
            "the project) and print the dev scripts to run them all with it.",
        ),
    ] = None,
    via_worker: ViaWorkerOption = False,
    keep_worker: KeepWorkerOption = False,
    parallel: ParallelOption = None,
    json_flag: JsonOption = False,
) -> None:
    """Plan the fixes for what verify finds, show the plan, and apply it with --yes (or after asking on a terminal).

    On wrangler's local state, keys stranded in a writer's own copy (oauth-api's, when each worker runs `wrangler
    dev` in its own folder) are copied into the serving worker's copy first; or, with --merge-into DIR, every
    worker's state is merged into DIR, the newest version of each key winning, for all to share from then on.

    Sources of truth: platform-tokens for every publishablekey:/secretkey: copy in api-tokens (missing and
    stale copies are rewritten from it); user:{u}:platformId for platform:{plt}:userId; platform:{plt}:stripeToken
    for user:{u}:stripeToken; the connected account's Stripe products and prices for platform:{plt}:tierConfig;
    a plaintext secret for its own missing hash mapping. Orphans are deleted only with --prune; corrupt values are
    reported, never guessed at; plaintext secrets are deleted only with --remove-plaintext-secrets; a corrupt rate
    bucket is deleted (it expires within two minutes anyway), a corrupt month of an end-user's usage only with
    --reset-corrupt-usage (its count starts again at 0).

    Order: deletions that stop a key authenticating first; tier configs before the api-tokens publishable key
    mappings, and the api-tokens secret key mappings last, so that at no point does a key authenticate without its
    tier config. Safe to re-run after a crash: it re-verifies and plans what is left.

    With --via-worker, verify reads through the verifier Worker and the plan is written through its bindings, in
    the same phases; a Stripe token is copied inside the Worker, only if it still is what verify saw.

    Example: dream kv repair --yes

    Example: dream --store cloudflare kv repair --via-worker --yes
    """

    run = app_context(ctx)
    as_json = run.wants_json(json_flag)
    if merge_into is not None:
        if via_worker:
            raise UsageError("--merge-into works on the local files; it goes without --via-worker")
        store = run.store()
        from dreamcli.platform.replication.copies import merge_into as merge

        merged = merge(store, merge_into)
        if as_json:
            print_json(merged.as_json())
            return
        for name, count in merged.copied.items():
            typer.echo(f"{name}: {count} keys into {merged.target}")
        if merged.d1:
            typer.echo(merged.d1)
        status("now run every worker with the same state; in each package.json:")
        for role, script in merged.dev_scripts.items():
            typer.echo(f'  {role}: "dev": "{script}"')
        status(f"and use --store {merged.store_spec}")
        return

    def confirm(plan: Any) -> bool:
        if not as_json:
            from dreamcli.cli.render import render_plan

            render_plan(plan)
        if plan_only:
            return False
        confirm_change(f"apply {plural(len(plan.fixes), 'action')}?", yes)
        return True

    shown: list[Any] = [None]

    def on_progress(done: int, total: int) -> None:
        if shown[0] is None:
            shown[0] = progress_line("applying", total, "actions") or (lambda n: None)
        shown[0](done)

    with _scanning_store(ctx, via_worker, keep_worker, parallel) as store:

        def tier_config_builder() -> Any:
            vendors = run.vendors(create=True)  # a write command: the vendors' store may be made here
            return onboarding.tier_configs_from_stripe(store, vendors)

        try:
            report = replication.run(
                store,
                lambda: _verify(ctx, store, platform, None, False, usage),
                prune=prune,
                remove_plaintext=remove_plaintext_secrets,
                reset_usage=reset_corrupt_usage,
                confirm=confirm,
                tier_config_builder=tier_config_builder,
                on_progress=on_progress,
            )
        except replication.RepairInterrupted:
            if shown[0] is not None:
                typer.echo("", err=True)  # end the progress line before the message
            raise
    if shown[0] is not None and sys.stderr.isatty():
        typer.echo("", err=True)
    if as_json:
        print_json(report.as_json())
    elif not report.plan.fixes:
        from dreamcli.cli.render import render_plan

        render_plan(report.plan)
    if not report.plan.fixes:
        remaining = len(report.before.findings)
        status(
            "nothing to repair" + (f"; {plural(remaining, 'finding')} need a decision (see above)" if remaining else "")
        )
    elif report.declined:
        status("the plan only: nothing applied (--yes applies it)")
        return
    else:
        for fix, why in report.failed:
            status(f"not repaired: {fix.namespace}: {fix.key}: {why}")
        status(f"applied {plural(report.applied, 'action')}; verify now finds {len(report.remaining.findings)}")
    if not report.clean:
        raise typer.Exit(int(ExitCode.FAILED))
