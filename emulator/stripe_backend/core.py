"""What every Stripe resource uses: loading, listing, searching and expanding objects, and events: the
webhook endpoints, each event recorded and queued for the endpoints that want it, and each delivery signed."""

from __future__ import annotations

import builtins
import json
import secrets
from collections.abc import Callable
from typing import Any

from emulator.stripe_backend.common import (
    API_VERSION,
    CURRENT_REQUEST,
    EXPANDABLE,
    _as_bool,
    _check_event_types,
    _in_range,
    _merge_metadata,
    as_int,
    sign_payload,
)
from emulator.stripe_errors import StripeAPIError, missing_param, no_such
from emulator.vendor_state import VendorState, new_id, public
from emulator.webhooks import Message, Outbox


class Core:
    # Set by StripeBackend.__init__.
    state: VendorState
    outbox: Outbox
    _platform: dict[str, Any]

    def clock_now(self, customer: dict[str, Any]) -> int:
        """The time a customer lives in: its test clock's (emulator/stripe_backend/clocks.py), else the emulator's."""
        clock = self.state.load(customer["test_clock"]) if customer.get("test_clock") else None
        return int(clock["frozen_time"]) if clock else self.state.now()

    def emit(
        self, account: str, event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record an event and queue it for every enabled endpoint that wants it: the account's own endpoints, and
        for a connected account's event the platform's Connect endpoints. Delivery happens later, elsewhere."""
        event: dict[str, Any] = {
            "id": new_id("evt_", 24),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.state.now(),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 0,
            "request": dict(CURRENT_REQUEST.get() or {"id": None, "idempotency_key": None}),
            "type": event_type,
        }
        if previous:
            event["data"]["previous_attributes"] = previous
        connected = account != self._platform["id"]
        if connected:
            event["account"] = account
        targets = [e for e in self.state.find(account, "webhook_endpoint", newest_first=False) if not e["_connect"]]
        if connected:
            targets += [
                e
                for e in self.state.find(self._platform["id"], "webhook_endpoint", newest_first=False)
                if e["_connect"]
            ]
        targets = [
            e
            for e in targets
            if e["status"] == "enabled" and ("*" in e["enabled_events"] or event_type in e["enabled_events"])
        ]
        event["pending_webhooks"] = len(targets)
        body = json.dumps(event, indent=2).encode()
        with self.state.file.write() as conn:
            self.state.save(account, event, conn)
            for endpoint in targets:
                self.outbox.enqueue("stripe", event["id"], event_type, endpoint, body, conn)
        self.outbox.wake()
        return event

    def sign(self, message: Message, timestamp: int) -> dict[str, str] | None:
        """The headers of one delivery attempt, signed with the endpoint's current secret; None when the endpoint
        is gone or disabled (Stripe stops retrying then)."""
        account = self.state.scope_of(message.endpoint_id)
        endpoint = self.state.load(message.endpoint_id, account, "webhook_endpoint") if account else None
        if endpoint is None or endpoint["status"] != "enabled":
            return None
        return {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign_payload(message.body, endpoint["_secret"], timestamp),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }

    # Webhooks and events

    def create_webhook_endpoint(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("url"):
            raise missing_param("url")
        events = params.get("enabled_events")
        if not events:
            raise missing_param("enabled_events")
        _check_event_types(events)
        endpoint = {
            "id": new_id("we_", 24),
            "object": "webhook_endpoint",
            "api_version": params.get("api_version"),
            "application": None,
            "created": self.state.now(),
            "description": params.get("description"),
            "enabled_events": list(events),
            "livemode": False,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "status": "enabled",
            "url": params["url"],
            "_connect": _as_bool(params.get("connect", False)),
            "_secret": "whsec_" + secrets.token_hex(24),
        }
        self.state.save(account, endpoint)
        shown = public(endpoint)
        shown["secret"] = endpoint["_secret"]  # only on creation, as Stripe does
        return shown

    def listen_secret(self) -> str:
        """The platform's `dream stripe listen` signing secret (made once)."""
        account = self._platform["id"]
        known = self.state.keys_of(account, "listen_secret")
        return known[0] if known else self.state.issue_key("whsec_" + secrets.token_hex(32), account, "listen_secret")

    def add_listener(self, url: str, events: builtins.list[str], lane: str) -> tuple[str, builtins.list[str]]:
        """Endpoints for `dream stripe listen`: the platform's events and its connected accounts', delivered only
        by the listener's own lane and signed with the platform's listen secret, the same on every run (as the
        Stripe CLI's is, so a receiver configured once keeps working). Returns (secret, endpoint ids)."""
        account, secret = self._platform["id"], self.listen_secret()
        ids = []
        for connect in (False, True):
            made = self.create_webhook_endpoint(
                account,
                {"url": url, "enabled_events": events, "connect": connect, "description": "dream stripe listen"},
            )
            endpoint = self.get(account, "webhook_endpoint", made["id"])
            endpoint.update(_secret=secret, _lane=lane)
            self.state.save(account, endpoint)
            ids.append(made["id"])
        return secret, ids

    def ensure_webhook_endpoint(self, url: str, events: builtins.list[str], *, connect: bool = False) -> str:
        """The platform's endpoint for `url` (made once; `connect` for its connected accounts' events);
        returns its signing secret."""
        account = self._platform["id"]
        for endpoint in self.state.find(account, "webhook_endpoint"):
            if endpoint["url"] == url and endpoint["_connect"] == connect:
                return endpoint["_secret"]
        return self.create_webhook_endpoint(account, {"url": url, "enabled_events": events, "connect": connect})[
            "secret"
        ]

    def update_webhook_endpoint(self, account: str, endpoint_id: str, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.get(account, "webhook_endpoint", endpoint_id)
        if "url" in params:
            if not params["url"]:
                raise missing_param("url")
            endpoint["url"] = params["url"]
        if params.get("enabled_events"):
            _check_event_types(params["enabled_events"])
            endpoint["enabled_events"] = list(params["enabled_events"])
        if "description" in params:
            endpoint["description"] = params["description"] or None
        if "metadata" in params:
            endpoint["metadata"] = _merge_metadata(endpoint["metadata"], params["metadata"])
        if "disabled" in params:
            endpoint["status"] = "disabled" if _as_bool(params["disabled"]) else "enabled"
        self.state.save(account, endpoint)
        return public(endpoint)

    def delete_webhook_endpoint(self, account: str, endpoint_id: str) -> dict[str, Any]:
        return self._removed(account, self.get(account, "webhook_endpoint", endpoint_id), None)

    def get(self, account: str, kind: str, object_id: str, label: str | None = None) -> dict[str, Any]:
        found = self.state.load(object_id, account, kind)
        if found is None:
            raise no_such(label or kind, object_id)
        return found

    def _removed(self, account: str, obj: dict[str, Any], event_type: str | None) -> dict[str, Any]:
        """Delete `obj` (its preconditions checked by the caller), send `event_type` with it, answer Stripe's stub."""
        self.state.delete(obj["id"])
        if event_type:
            self.emit(account, event_type, public(obj))
        return {"id": obj["id"], "object": obj["object"], "deleted": True}

    def _edited(
        self,
        account: str,
        kind: str,
        object_id: str,
        params: dict[str, Any],
        *,
        texts: tuple[str, ...] = (),
        flags: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """The plain update most objects take: text fields ("" unsets), boolean flags, metadata merged; `*.updated`
        with what changed."""
        obj = self.get(account, kind, object_id)
        before = json.loads(json.dumps(obj))
        for field in texts:
            if field in params:
                obj[field] = params[field] or None
        for field in flags:
            if field in params:
                obj[field] = params[field] is True or str(params[field]).lower() == "true"
        obj["metadata"] = _merge_metadata(obj.get("metadata") or {}, params.get("metadata"))
        return self._updated(account, f"{kind}.updated", before, obj)

    def _updated(self, account: str, event_type: str, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """Save a changed object; `*.updated` names what changed in `previous_attributes` (nothing: no event)."""
        self.state.save(account, after)
        previous = {key: value for key, value in before.items() if after.get(key) != value and key != "updated"}
        if previous:
            self.emit(account, event_type, public(after), public(previous))
        return after

    def list(
        self,
        account: str,
        kind: str,
        params: dict[str, Any],
        filters: dict[str, Any] | None = None,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """A page of `kind`, newest first, filtered by `filters` (field = value), `keep`, and the `created` range
        and `ids` every list takes."""
        limit = as_int(params, "limit", minimum=1) or 10
        if limit > 100:
            raise StripeAPIError(400, "This value must be less than or equal to 100.", param="limit")
        items = self.state.find(account, kind)
        for name, value in (filters or {}).items():
            if value is not None:
                items = [item for item in items if str(item.get(name)).lower() == str(value).lower()]
        if keep is not None:
            items = [item for item in items if keep(item)]
        if params.get("created") not in (None, ""):
            items = [item for item in items if _in_range(item.get("created"), params["created"])]
        if isinstance(params.get("ids"), list):
            items = [item for item in items if item["id"] in params["ids"]]
        after, before = params.get("starting_after"), params.get("ending_before")
        if after and before:
            raise StripeAPIError(400, "You may only specify one of these parameters: ending_before, starting_after.")
        ids = [item["id"] for item in items]
        if after:
            if after not in ids:
                raise no_such(kind, after, "starting_after")
            items = items[ids.index(after) + 1 :]
            page = items[:limit]
        elif before:  # the page just before it (newest first), which auto-pagination walks back through
            if before not in ids:
                raise no_such(kind, before, "ending_before")
            items = items[: ids.index(before)]
            page = items[-limit:]
        else:
            page = items[:limit]
        return {
            "object": "list",
            "data": [public(item) for item in page],
            "has_more": len(items) > limit,
            "url": f"/v1/{kind.replace('.', '/')}s",
        }

    def search(self, account: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """GET /v1/{kind}s/search: the Search API's query language over the account's objects."""
        from emulator.stripe_search import page

        return page(kind, [public(item) for item in self.state.find(account, kind)], params)

    # Expansion

    def line_items(self, account: str, session_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """GET /v1/checkout/sessions/{id}/line_items: the session's items as Stripe lists them."""
        session = self.get(account, "checkout.session", session_id)
        data = []
        for index, item in enumerate(session["_line_items"]):
            price = self.get(account, "price", item["price"])
            amount = (price.get("unit_amount") or 0) * item["quantity"]
            data.append(
                {
                    "id": f"li_{session_id.removeprefix('cs_')[:20]}{index}",
                    "object": "item",
                    "amount_discount": 0,
                    "amount_subtotal": amount,
                    "amount_tax": 0,
                    "amount_total": amount,
                    "currency": price.get("currency"),
                    "description": None,
                    "metadata": None,
                    "price": public(price),
                    "quantity": item["quantity"],
                }
            )
        limit = as_int(params, "limit", minimum=1) or 10
        return {
            "object": "list",
            "data": data[:limit],
            "has_more": len(data) > limit,
            "url": f"/v1/checkout/sessions/{session_id}/line_items",
        }

    def expand(self, account: str, result: Any, paths: builtins.list[str]) -> Any:
        """`expand[]`: each path names an id field (`customer`, `subscription`, `data.product`, a list's items by
        `data.`) replaced by its object; `line_items` on a checkout session is its items' list."""
        for path in paths:
            self._expand(account, result, path.split("."), path)
        return result

    def _expand(self, account: str, obj: Any, parts: builtins.list[str], path: str) -> None:
        head, rest = parts[0], parts[1:]
        if isinstance(obj, dict) and obj.get("object") == "list" and head == "data":
            for item in obj.get("data", []):
                if rest:
                    self._expand(account, item, rest, path)
            return
        if not isinstance(obj, dict) or (head not in obj and head != "line_items"):
            raise StripeAPIError(400, f"This property cannot be expanded ({path}).", param="expand")
        if head == "line_items" and obj.get("object") == "checkout.session":
            obj["line_items"] = self.line_items(account, obj["id"], {"limit": 100})
        elif isinstance(obj[head], str):
            kind = EXPANDABLE.get(head)
            if kind is None:
                raise StripeAPIError(400, f"This property cannot be expanded ({path}).", param="expand")
            obj[head] = public(self.get(account, kind, obj[head]))
        if rest and obj.get(head) is not None:
            self._expand(account, obj[head], rest, path)
