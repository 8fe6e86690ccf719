"""The console's routes: one page per view, one POST per action, each calling the function the CLI calls.

Pages are Jinja2 templates with autoescaping on (an id, an e-mail or a metadata value is text, never markup);
every POST carries the session's CSRF token; every answer carries `security.HEADERS` and a Server-Timing header
with the time the server spent on it (what `bench/console_bench.py` reads)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dreamcli import layout
from dreamcli.console import browse, charts, security
from dreamcli.console.jobs import Jobs, Options, plan_digest
from dreamcli.errors import DreamError, NotFound, RemoteError, StoreError, UsageError
from dreamcli.stores.ports import Store
from dreamcli.topology import API_TOKENS, API_USAGE, PLATFORM_TOKENS, PLATFORM_USAGE

log = logging.getLogger("dream.console")
HERE = Path(__file__).parent
NAMESPACES = (PLATFORM_TOKENS, API_TOKENS, PLATFORM_USAGE, API_USAGE)
MAX_FORM_BYTES = 16 * 1024
MAX_QUERY_TEXT = browse.MAX_PREFIX
LIVE_EVERY_S = 2.0
FINDINGS_SHOWN = 200
CUSTOMERS_SHOWN = 50
OVERVIEW_PLATFORMS = 5
GRACE_CHOICES = (
    ("", "none: the old pair works until revoked"),
    ("1h", "1 hour"),
    ("24h", "24 hours"),
    ("7d", "7 days"),
)


@dataclass
class Console:
    """What the pages read and act on."""

    store: Store
    vendors: Any = None  # dreamcli.vendors.settings.Vendors, None when no vendors are reachable
    emulator: Any = None  # emulator.app.Emulator when the vendors are emulated
    read_only: bool = False
    sessions: security.Sessions = field(default_factory=security.Sessions)
    jobs: Jobs | None = None
    stopping: threading.Event = field(default_factory=threading.Event)  # set: the SSE streams end
    flashes: dict[str, list[str]] = field(default_factory=dict)  # by session (its CSRF token: unique, unguessable)

    def __post_init__(self) -> None:
        if self.jobs is None:
            self.jobs = Jobs(self.store, self._tier_config_builder if self.vendors is not None else None)

    def _tier_config_builder(self) -> Any:
        from dreamcli.platform import onboarding

        store, vendors = self.store, self.vendors
        return lambda plt, user: onboarding.tier_config_from_stripe(store, vendors, plt, user)

    def tallies(self) -> Any:
        return self.emulator.tallies() if self.emulator is not None else None


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["money"] = _money
    env.filters["number"] = lambda n: "-" if n is None else f"{n:,}"
    env.globals["quote"] = lambda text: quote(str(text), safe="")
    env.globals["query"] = lambda **params: urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return env


def _when(timestamp: float | int | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(float(timestamp), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _money(cents: float | int | None, currency: str = "usd") -> str:
    if cents is None:
        return "-"
    return f"{cents / 100:,.2f} {currency.upper()}"


class Pages:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.env = _environment()

    # -- plumbing --------------------------------------------------------------------------------------------

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        session = request.scope.get("console_session")
        flashes = self.console.flashes.pop(session.csrf, []) if session is not None else []
        html = self.env.get_template(template).render(
            request=request,
            path=request.url.path,
            csrf=session.csrf if session is not None else "",
            signed_in=session is not None,
            read_only=self.console.read_only,
            store=self.console.store,
            flashes=flashes,
            emulated=self.console.emulator is not None,
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def flash(self, request: Request, message: str) -> None:
        session = request.scope.get("console_session")
        if session is not None:
            self.console.flashes.setdefault(session.csrf, []).append(message)

    async def form(self, request: Request, *, writes: bool = True) -> dict[str, str]:
        """The POST's fields, once its CSRF token and origin are checked (403 otherwise), and, for a POST that
        `writes`, the console writable."""
        session = request.scope.get("console_session")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
            raise HTTPException(413, "form too large")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
        origin = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if not security.same_origin({k.lower(): v for k, v in request.headers.items()}, origin):
            raise HTTPException(403, "this form was sent from another site: refused")
        if body and "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            raise HTTPException(415, "forms are sent as application/x-www-form-urlencoded")
        from urllib.parse import parse_qsl

        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=32))
        except (UnicodeDecodeError, ValueError):
            raise HTTPException(400, "the form could not be read") from None
        if session is None or not security.csrf_ok(session, fields.get("csrf")):
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page and try again")
        if writes and self.console.read_only:
            raise HTTPException(
                403, "this console is read-only (a production store): start it with --allow-writes to change data"
            )
        return fields

    @staticmethod
    def text_param(request: Request, name: str, default: str = "") -> str:
        value = request.query_params.get(name, default)
        if len(value) > MAX_QUERY_TEXT or "\x00" in value:
            raise HTTPException(400, f"{name} is too long or holds a NUL")
        return value

    def _platform(self, platform_id: str) -> str:
        from dreamcli.platform.developers import require_platform

        if len(platform_id) > 200:
            raise NotFound("no such platform")
        return require_platform(self.console.store, platform_id)

    # -- sign-in -------------------------------------------------------------------------------------------

    async def sign_in(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        made = self.console.sessions.sign_in(token) if token and len(token) < 200 else None
        if made is None:
            return self.render(
                request,
                "signin.html",
                403,
                title="Sign in",
                problem="This sign-in address is wrong or was used already (each works once). Stop the console and "
                "start it again (`dream console`) for a new one.",
            )
        session_id, _ = made
        answer = RedirectResponse("/", status_code=303)
        answer.set_cookie(security.COOKIE, session_id, httponly=True, samesite="strict", path="/")
        return answer

    async def sign_out(self, request: Request) -> Response:
        await self.form(request, writes=False)
        self.console.sessions.sign_out(request.cookies.get(security.COOKIE))
        answer = self.render(request, "signin.html", 200, title="Signed out", problem="Signed out.")
        answer.delete_cookie(security.COOKIE, path="/")
        return answer

    # -- overview --------------------------------------------------------------------------------------------

    def overview(self, request: Request) -> Response:
        from dreamcli.platform.customers import ensure_schema
        from dreamcli.platform.overview import busiest, overview

        store = self.console.store
        if self.console.vendors is None:  # the store's own figures only (see overview.html)
            ensure_schema(store)
            window, rows = busiest(store, days=None, top=10, now=store.clock())
            data: dict[str, Any] = {"window": window, "topPlatforms": rows, "mrrTrend": [], "mrr": {}}
        else:
            data = overview(
                store, self.console.vendors, days=None, top=10, now=store.clock(), tallies=self.console.tallies()
            )
        currencies = sorted({c for month in data["mrrTrend"] for c in month["mrr"]} | set(data["mrr"]))
        trend_charts = [
            (
                currency,
                Markup(
                    charts.bars(
                        [(m["month"], m["mrr"].get(currency, 0) / 100) for m in data["mrrTrend"]],
                        label=f"MRR in {currency.upper()} at the end of each month",
                        unit=f" {currency.upper()}",
                    )
                ),
            )
            for currency in currencies
        ]
        platforms, more = browse.platform_page(store, None, limit=OVERVIEW_PLATFORMS)
        return self.render(
            request,
            "overview.html",
            title="Overview",
            data=data,
            trend_charts=trend_charts,
            platforms=platforms[:OVERVIEW_PLATFORMS],
            more_platforms=bool(more) or len(platforms) > OVERVIEW_PLATFORMS,
            no_vendors=self.console.vendors is None,
        )

    # -- platforms -------------------------------------------------------------------------------------------

    def platforms(self, request: Request) -> Response:
        wanted = self.text_param(request, "q").strip()
        if wanted:
            return RedirectResponse(self._find_platform(wanted), status_code=303)
        rows, cursor = browse.platform_page(self.console.store, self.text_param(request, "cursor") or None)
        return self.render(request, "platforms.html", title="Platforms", rows=rows, cursor=cursor)

    def _find_platform(self, wanted: str) -> str:
        from dreamcli.platform import developers

        store = self.console.store
        if wanted.startswith("plt_"):
            return f"/platforms/{quote(self._platform(wanted), safe='')}"
        user_id = wanted
        if "@" in wanted:
            if self.console.vendors is None:
                raise UsageError("finding a developer by e-mail needs the vendors (Clerk)")
            user_id = developers.user_id_of(self.console.vendors, wanted)
        if not layout.is_valid_id(user_id):  # no key can name it (a ":", whitespace...): nobody
            raise NotFound(f"no platform or developer {wanted!r}")
        return f"/platforms/{quote(developers.platform_of(store, user_id), safe='')}"

    def platform(self, request: Request) -> Response:
        from dreamcli.platform import dashboard, developers, keys

        store = self.console.store
        platform_id = self._platform(request.path_params["platform_id"])
        now = store.clock()
        try:
            owner = developers.owner_of(store, platform_id)
        except NotFound:
            owner = None
        summary = None
        try:
            config = dashboard.tier_config(store, platform_id)
            tiers, tiers_problem = (config.get("tiers") if isinstance(config, dict) else None), None
            if not isinstance(tiers, list):
                tiers, tiers_problem = [], "its tier config has no list of tiers: `dream kv verify` reports it"
            else:
                summary = dashboard.summary(store, platform_id, days=30, top=50)
        except NotFound as exc:
            tiers, tiers_problem = [], str(exc)
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError):
            tiers, tiers_problem = [], "its tier config is not what the guide writes: `dream kv verify` reports it"
        pairs = keys.list_keys(store, platform_id) if owner is not None else []
        from dreamcli.platform.customers import list_customers

        try:
            customers = list_customers(store, platform_id, limit=CUSTOMERS_SHOWN)
        except DreamError:
            customers = []  # D1 not migrated yet: no customers table
        chart = None
        if summary is not None and summary["daily"]:
            chart = Markup(
                charts.bars(
                    [(row["day"], row["calls"]) for row in summary["daily"]],
                    label=f"API calls per day, {platform_id}",
                    unit=" calls",
                )
            )
        return self.render(
            request,
            "platform.html",
            title=platform_id,
            platform_id=platform_id,
            keys_prefix=layout.platform_keys_prefix(platform_id),
            owner=owner,
            summary=summary,
            tiers=tiers,
            tiers_problem=tiers_problem,
            pairs=[(pair, pair.status(now)) for pair in pairs],
            customers=customers,
            chart=chart,
        )

    def key_action(self, request: Request) -> Response:
        """The confirmation page of a rotation or a revocation."""
        from dreamcli.platform import keys

        platform_id, pk, action = self._key_target(request)
        pair = next((p for p in keys.list_keys(self.console.store, platform_id) if p.publishable_key == pk), None)
        if pair is None:
            raise NotFound(f"{pk} is not a key of {platform_id}")
        return self.render(
            request,
            "key_confirm.html",
            title=f"{action.capitalize()} {pk}",
            platform_id=platform_id,
            pair=pair,
            status=pair.status(self.console.store.clock()),
            action=action,
            grace_choices=GRACE_CHOICES,
        )

    def _key_target(self, request: Request) -> tuple[str, str, str]:
        action = request.path_params["action"]
        if action not in ("rotate", "revoke"):
            raise NotFound(f"no action {action!r} on a key (rotate or revoke)")
        pk = request.path_params["pk"]
        if not layout.is_valid_id(pk) or len(pk) > 200:
            raise NotFound("no such key")
        return self._platform(request.path_params["platform_id"]), pk, action

    async def key_act(self, request: Request) -> Response:
        from dreamcli.platform import keys

        fields = await self.form(request)
        platform_id, pk, action = self._key_target(request)
        store = self.console.store

        def act() -> Any:
            now = store.clock()
            if action == "revoke":
                return keys.revoke_key(store, platform_id, pk, force=fields.get("force") == "yes", now=now)
            grace = fields.get("grace", "")
            if grace not in {value for value, _ in GRACE_CHOICES}:
                raise UsageError(f"grace {grace!r}: choose one of the offered periods")
            seconds = keys.parse_duration(grace) if grace else None
            return keys.rotate_key(store, platform_id, publishable_key=pk, grace_seconds=seconds, now=now)

        done = await asyncio.to_thread(act)
        if action == "revoke":
            self.flash(request, f"{pk} is revoked: its calls fail from now on.")
            return RedirectResponse(f"/platforms/{quote(platform_id, safe='')}", status_code=303)
        return self.render(request, "key_rotated.html", title="New key pair", platform_id=platform_id, rotated=done)

    # -- replication -----------------------------------------------------------------------------------------

    def replication(self, request: Request) -> Response:
        from dreamcli.platform import replication

        jobs = self.console.jobs
        assert jobs is not None
        wanted_class = self.text_param(request, "class") or None
        wanted_platform = self.text_param(request, "platform") or None
        result = jobs.last_verify
        context: dict[str, Any] = {"result": None}
        if result is not None:
            chosen = replication.select(
                result, platform=wanted_platform, classes=[wanted_class] if wanted_class else None
            )
            by_platform: dict[str, int] = {}
            for finding in result.findings:
                name = finding.platform or "(none)"
                by_platform[name] = by_platform.get(name, 0) + 1
            plan = replication.plan_repair(result)
            context = {
                "result": result,
                "by_class": result.by_class(),
                "by_platform": sorted(by_platform.items(), key=lambda item: (-item[1], item[0]))[:20],
                "findings": chosen.findings[:FINDINGS_SHOWN],
                "shown_of": len(chosen.findings),
                "plan": plan,
            }
        return self.render(
            request,
            "replication.html",
            title="Replication",
            job=jobs.current,
            busy=jobs.busy(),
            verified_at=jobs.verified_at,
            wanted_class=wanted_class,
            wanted_platform=wanted_platform,
            **context,
        )

    async def verify(self, request: Request) -> Response:
        await self.form(request, writes=False)  # verify reads: allowed on a read-only console
        assert self.console.jobs is not None
        self.console.jobs.verify()
        return RedirectResponse("/replication/progress-page", status_code=303)

    def repair_confirm(self, request: Request) -> Response:
        from dreamcli.platform import replication

        jobs = self.console.jobs
        assert jobs is not None
        if jobs.last_verify is None:
            raise UsageError("verify first: the repair plan is made from what verify found")
        options = Options(
            prune=request.query_params.get("prune") == "yes",
            remove_plaintext=request.query_params.get("remove_plaintext") == "yes",
            reset_usage=request.query_params.get("reset_usage") == "yes",
        )
        plan = replication.plan_repair(
            jobs.last_verify,
            prune=options.prune,
            remove_plaintext=options.remove_plaintext,
            reset_usage=options.reset_usage,
        )
        return self.render(
            request,
            "repair_confirm.html",
            title="Repair",
            plan=plan,
            actions=plan.fixes[:FINDINGS_SHOWN],
            digest=plan_digest(plan),
            options=options,
        )

    async def repair(self, request: Request) -> Response:
        fields = await self.form(request)
        assert self.console.jobs is not None
        options = Options(
            prune=fields.get("prune") == "yes",
            remove_plaintext=fields.get("remove_plaintext") == "yes",
            reset_usage=fields.get("reset_usage") == "yes",
        )
        digest = fields.get("plan", "")
        if not digest.isalnum() or len(digest) != 32:
            raise UsageError("the form names no plan: open the repair page again")
        self.console.jobs.repair(options, digest)
        return RedirectResponse("/replication/progress-page", status_code=303)

    def progress_page(self, request: Request) -> Response:
        assert self.console.jobs is not None
        job = self.console.jobs.current
        if job is None:
            return RedirectResponse("/replication", status_code=303)
        return self.render(request, "progress.html", title=f"{job.kind.capitalize()} progress", job=job)

    async def progress(self, request: Request) -> Response:
        jobs = self.console.jobs
        assert jobs is not None

        async def events() -> Any:
            while True:
                job = jobs.current
                state = job.as_json() if job is not None else {"finished": True}
                yield f"data: {json.dumps(state)}\n\n"
                if state["finished"] or await request.is_disconnected() or self._stopping():
                    return
                await asyncio.sleep(0.25)

        return _sse(events())

    # -- webhooks --------------------------------------------------------------------------------------------

    def webhooks(self, request: Request) -> Response:
        emulator = self._emulator("webhook deliveries")
        vendor = self.text_param(request, "vendor") or None
        state = self.text_param(request, "state") or None
        before_text = self.text_param(request, "before")
        if before_text and not before_text.isdigit():
            raise UsageError("before is an outbox position (a number)")
        rows = emulator.deliveries_list(vendor, state=state, limit=50, before=int(before_text) if before_text else None)
        for row in rows:
            row["next"] = _next(row["nextAttemptAt"], emulator.clock())
        older = rows[-1]["seq"] if len(rows) == 50 else None
        return self.render(
            request, "webhooks.html", title="Webhooks", rows=rows, vendor=vendor, state=state, older=older
        )

    async def resend(self, request: Request) -> Response:
        fields = await self.form(request)
        emulator = self._emulator("webhook deliveries")
        event_id = fields.get("event", "")
        endpoint = fields.get("endpoint") or None
        if len(event_id) > 200 or (endpoint is not None and len(endpoint) > 200):
            raise UsageError("no such event")
        rows = await asyncio.to_thread(emulator.resend, event_id, endpoint, 20.0)
        for row in rows:
            answer = row["lastStatus"] or row["lastError"] or row["state"]
            self.flash(request, f"{event_id} resent to {row['url']}: {answer} ({row['state']})")
        return RedirectResponse("/webhooks", status_code=303)

    def _emulator(self, what: str) -> Any:
        if self.console.emulator is None:
            raise UsageError(
                f"{what} are the emulated vendors' (this environment names real vendors): use the vendor's dashboard"
            )
        return self.console.emulator

    # -- vendors ---------------------------------------------------------------------------------------------

    def vendors(self, request: Request) -> Response:
        from emulator.vendor_state import inventory

        emulator = self._emulator("vendor objects")
        grouped: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for vendor, scope, kind, count in inventory(emulator.file):
            grouped.setdefault((vendor, scope), []).append((kind, count))
        return self.render(request, "vendors.html", title="Vendors", grouped=sorted(grouped.items()))

    def vendor_objects(self, request: Request) -> Response:
        from emulator.vendor_state import objects_page

        emulator = self._emulator("vendor objects")
        vendor, scope, kind = (request.path_params[name] for name in ("vendor", "scope", "kind"))
        if vendor not in ("stripe", "clerk") or len(scope) > 200 or len(kind) > 64:
            raise NotFound("no such vendor objects")
        before = None
        before_text = self.text_param(request, "before")
        if before_text:
            created, _, object_id = before_text.partition(":")
            if not created.isdigit() or not object_id:
                raise UsageError("before is created:id")
            before = (int(created), object_id)
        objects = objects_page(emulator.file, vendor, scope, kind, before)
        older = f"{objects[-1].get('created', 0)}:{objects[-1]['id']}" if len(objects) == 50 else None
        return self.render(
            request,
            "vendor_objects.html",
            title=f"{vendor} {kind} in {scope}",
            vendor=vendor,
            scope=scope,
            kind=kind,
            rows=[(obj, _summary(obj)) for obj in objects],
            older=older,
        )

    def vendor_object(self, request: Request) -> Response:
        from emulator.vendor_state import one_object

        emulator = self._emulator("vendor objects")
        vendor, object_id = request.path_params["vendor"], request.path_params["object_id"]
        if vendor not in ("stripe", "clerk") or len(object_id) > 200:
            raise NotFound("no such object")
        found = one_object(emulator.file, vendor, object_id)
        if found is None:
            raise NotFound(f"no {vendor} object {object_id}")
        scope, obj = found
        shown = json.dumps(browse.masked_object(obj), indent=2, sort_keys=True)
        return self.render(
            request, "vendor_object.html", title=object_id, vendor=vendor, scope=scope, obj=obj, shown=shown
        )

    # -- KV --------------------------------------------------------------------------------------------------

    def kv(self, request: Request) -> Response:
        namespace = self.text_param(request, "ns", PLATFORM_TOKENS)
        if namespace not in NAMESPACES:
            raise UsageError(f"namespace {namespace!r}: one of {', '.join(NAMESPACES)}")
        prefix = self.text_param(request, "prefix")
        page = browse.kv_page(self.console.store, namespace, prefix, self.text_param(request, "cursor") or None)
        return self.render(
            request, "kv.html", title="KV", namespaces=NAMESPACES, namespace=namespace, prefix=prefix, page=page
        )

    def kv_value(self, request: Request) -> Response:
        namespace = self.text_param(request, "ns", PLATFORM_TOKENS)
        if namespace not in NAMESPACES:
            raise UsageError(f"namespace {namespace!r}: one of {', '.join(NAMESPACES)}")
        key = self.text_param(request, "key")
        if not key:
            raise UsageError("which key? (key=...)")
        found = browse.kv_value(self.console.store, namespace, key)
        if found is None:
            raise NotFound(f"no key {key!r} in {namespace}")
        return self.render(request, "kv_value.html", title=key, found=found)

    # -- live counters ---------------------------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        from dreamcli.platform.overview import calls_this_month

        store, emulator = self.console.store, self.console.emulator
        live: dict[str, Any] = {"callsThisMonth": calls_this_month(store, store.clock())}
        if emulator is not None:
            states = emulator.outbox.states()
            live |= {"webhooksPending": states.get("pending", 0), "webhooksFailed": states.get("failed", 0)}
            live["developers"] = sum(emulator.tallies().plans().values())
        return live

    async def live(self, request: Request) -> Response:
        async def events() -> Any:
            while True:
                figures = await asyncio.to_thread(self.counters)
                yield f"data: {json.dumps(figures)}\n\n"
                for _ in range(int(LIVE_EVERY_S / 0.25)):
                    if await request.is_disconnected() or self._stopping():
                        return
                    await asyncio.sleep(0.25)

        return _sse(events())

    def _stopping(self) -> bool:
        return self.console.stopping.is_set()


def _status_of(exc: Exception) -> int:
    """A dream error's HTTP status: the input (4xx), or what the console depends on (502, 503)."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, UsageError):
        return 400
    if isinstance(exc, RemoteError):
        return 502  # Cloudflare, Stripe or Clerk failed
    if isinstance(exc, StoreError):
        return 503  # the store is busy (another process's write) or unreadable
    return 409


def _next(when: float | None, now: float) -> str:
    if when is None:
        return ""
    return "now" if when <= now else f"in {when - now:.0f} s"


def _summary(obj: dict[str, Any]) -> str:
    """A line that tells one vendor object from another: its e-mail, name, status or amount."""
    for path in (("email_addresses", 0, "email_address"), ("email",), ("name",), ("description",)):
        value: Any = obj
        for step in path:
            try:
                value = value[step]
            except (KeyError, IndexError, TypeError):
                value = None
                break
        if isinstance(value, str) and value:
            parts = [value]
            break
    else:
        parts = []
    for name in ("status", "type", "livemode"):
        if isinstance(obj.get(name), str):
            parts.append(f"{name} {obj[name]}")
    if isinstance(obj.get("unit_amount"), int):
        parts.append(_money(obj["unit_amount"], str(obj.get("currency") or "usd")))
    return ", ".join(parts)[:160]


def _sse(events: Any) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers={"x-accel-buffering": "no"})


# -- the app ---------------------------------------------------------------------------------------------------

Handler = Callable[[Request], Any]


def create_app(console: Console) -> Starlette:
    pages = Pages(console)

    def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Coroutines as they are; a page that reads the store in a worker thread, so the loop keeps serving."""
        if asyncio.iscoroutinefunction(handler):
            return handler

        async def threaded(request: Request) -> Response:
            result: Response = await asyncio.to_thread(handler, request)
            return result

        return threaded

    routes = [
        Route("/signin", page(pages.sign_in)),
        Route("/signout", page(pages.sign_out), methods=["POST"]),
        Route("/", page(pages.overview)),
        Route("/platforms", page(pages.platforms)),
        Route("/platforms/{platform_id}", page(pages.platform)),
        Route("/platforms/{platform_id}/keys/{pk}/{action}", page(pages.key_action)),
        Route("/platforms/{platform_id}/keys/{pk}/{action}", page(pages.key_act), methods=["POST"]),
        Route("/replication", page(pages.replication)),
        Route("/replication/verify", page(pages.verify), methods=["POST"]),
        Route("/replication/repair", page(pages.repair_confirm)),
        Route("/replication/repair", page(pages.repair), methods=["POST"]),
        Route("/replication/progress-page", page(pages.progress_page)),
        Route("/replication/progress", page(pages.progress)),
        Route("/webhooks", page(pages.webhooks)),
        Route("/webhooks/resend", page(pages.resend), methods=["POST"]),
        Route("/vendors", page(pages.vendors)),
        Route("/vendors/{vendor}/objects/{scope}/{kind}", page(pages.vendor_objects)),
        Route("/vendors/{vendor}/object/{object_id}", page(pages.vendor_object)),
        Route("/kv", page(pages.kv)),
        Route("/kv/value", page(pages.kv_value)),
        Route("/live", page(pages.live)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    def problem(request: Request, status_code: int, message: str) -> Response:
        return pages.render(request, "problem.html", status_code, title=f"{status_code}", message=message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return problem(request, exc.status_code, str(exc.detail))

    async def dream_error(request: Request, exc: Exception) -> Response:
        return problem(request, _status_of(exc), str(exc))

    async def crash(request: Request, exc: Exception) -> Response:
        log.error("console %s %s failed", request.method, request.url.path, exc_info=exc)
        return problem(request, 500, "the console failed on this page (its log says why)")

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, DreamError: dream_error, Exception: crash},
    )
    return security_guard(app, console, problem_page=pages)


def security_guard(app: Any, console: Console, problem_page: Pages) -> Any:
    """The ASGI layer before every route: Host check, sign-in check, the security headers and Server-Timing."""
    public = ("/signin", "/static/")

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        port = scope.get("server", ("", 0))[1] if scope.get("server") else 0

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in security.HEADERS.items()]
                spent = (time.perf_counter() - started) * 1000
                extra.append((b"server-timing", f"app;dur={spent:.1f}".encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        responded = False

        async def send_once(message: Any) -> None:
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send_with_headers(message)

        host = headers.get("host", "")
        if port and host not in security.allowed_hosts(port):
            await _plain(send_with_headers, 421, "This console answers only at its own address (127.0.0.1).")
            return
        path = scope.get("path", "")
        if not path.startswith(public):
            cookies = _cookies(headers.get("cookie", ""))
            session = console.sessions.session(cookies.get(security.COOKIE))
            if session is None:
                await _plain(
                    send_with_headers,
                    401,
                    "Not signed in: open the sign-in address `dream console` printed (it works once).",
                )
                return
            scope = {**scope, "console_session": session}
        try:
            await app(scope, receive, send_once)
        except Exception:  # noqa: BLE001 - a page's bug: logged (by the app's handler), answered, never a reset
            if not responded:
                await _plain(send_with_headers, 500, "The console failed on this page (its log says why).")

    return guarded


def _cookies(header: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name and name not in found:
            found[name] = value
    return found


async def _plain(send: Any, status_code: int, message: str) -> None:
    from html import escape

    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>dream console</title>'
        '<link rel="stylesheet" href="/static/console.css"><link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '</head><body><main class="narrow"><h1>dream console</h1>'
        f"<p>{escape(message)}</p></main></body></html>"
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status_code,
            "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
