"""Generated from Stripe's published parameter description (emulator/specs/stripe-params.json): every documented
top-level parameter of every served route is sent, with a value of the documented type, alongside the route's
required ones, and must not be refused. And what the description does not list, at any depth, is refused as Stripe
refuses it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dreamcli.vendors.settings import settings_from_emulator
from emulator.app import Emulator
from emulator.stripe_params import spec

ROUTES = spec()["routes"]

# Values of the documented type that also mean something to the emulator, by parameter name.
MEANINGFUL: dict[str, Any] = {
    "currency": "usd",
    "email": "spec@example.com",
    "customer_email": "spec@example.com",
    "url": "https://example.com/hook",
    "success_url": "https://example.com/ok",
    "cancel_url": "https://example.com/cancel",
    "return_url": "https://example.com/back",
    "enabled_events": ["checkout.session.completed"],
    "unit_amount": "500",
    "amount": "500",
    "quantity": "1",
    "limit": "3",
    "expand": [],
    "interval": "month",
    "default_price_data": {"currency": "usd", "unit_amount": "500"},
    "query": 'metadata["k"]:"v"',
}


# Parameters that name an object: one that exists, of that kind.
ID_PARAMS = {
    "customer": "customers",
    "product": "products",
    "price": "prices",
    "payment_method": "payment_methods",
    "default_payment_method": "payment_methods",
    "default_price": "prices",
    "charge": "charges",
    "payment_intent": "payment_intents",
    "coupon": "coupons",
    "promotion_code": "promotion_codes",
    "configuration": "configurations",
    "test_clock": "test_clocks",
    "subscription": "subscriptions",
    "invoice": "invoices",
}
# The smallest meaningful request of a route (what a caller always sends), beside the parameter under test.
BASE: dict[str, dict[str, Any]] = {
    "POST /v1/checkout/sessions": {
        "mode": "subscription",
        "success_url": "https://example.com/ok",
        "line_items": [{"price": "@prices", "quantity": "1"}],
    },
    "POST /v1/prices": {"product": "@products", "unit_amount": "500", "recurring": {"interval": "month"}},
    "POST /v1/subscriptions": {"customer": "@customers", "items": [{"price": "@prices"}]},
    "POST /v1/subscriptions/{id}": {"items": [{"price": "@prices"}]},
    "POST /v1/invoiceitems": {"customer": "@customers", "amount": "500", "currency": "usd"},
    "POST /v1/invoices": {"customer": "@customers"},
    "POST /v1/payment_methods": {"type": "card", "card": {"token": "tok_visa"}},
    "POST /v1/payment_methods/{id}/attach": {"customer": "@customers"},
    "POST /v1/payment_intents": {"amount": "700", "currency": "usd", "payment_method": "pm_card_visa"},
    "POST /v1/setup_intents": {"payment_method": "pm_card_visa"},
    "POST /v1/refunds": {"charge": "@charges", "amount": "1"},
    "POST /v1/coupons": {"percent_off": "10"},
    "POST /v1/promotion_codes": {"promotion": {"type": "coupon", "coupon": "@coupons"}},
    "POST /v1/plans": {"amount": "500", "currency": "usd", "interval": "month", "product": "@products"},
    "POST /v1/billing_portal/sessions": {"customer": "@customers"},
    "POST /v1/test_helpers/test_clocks/{id}/advance": {"frozen_time": "1800086400"},
}
# A path whose object must be in a particular state: which of the world's objects it takes.
PATH_OBJECT = {"POST /v1/payment_intents/{id}/capture": "held_intents"}


def _resolved(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return ids[value[1:]]
    if isinstance(value, dict):
        return {k: _resolved(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v, ids) for v in value]
    return value


def _with_base(value: Any, base: Any) -> Any:
    """The parameter under test over the route's base value for it: an item keeps what the base needs (a price)."""
    if base is None:
        return value
    if isinstance(value, list) and isinstance(base, list) and value and isinstance(value[0], dict):
        return [{**base[0], **value[0]}]
    if isinstance(value, dict) and isinstance(base, dict):
        return {**base, **value}
    return base


def sample(node: dict[str, Any], name: str = "", ids: dict[str, str] | None = None) -> Any:
    if name in MEANINGFUL:
        return MEANINGFUL[name]
    if name in ID_PARAMS and ids and node["t"] in ("str", "or"):
        return ids[ID_PARAMS[name]]
    kind = node["t"]
    if kind == "obj":
        return {key: sample(node["p"][key], key, ids) for key in node.get("r", [])} or {
            key: sample(child, key, ids) for key, child in list(node["p"].items())[:1]
        }
    if kind == "list":
        return [sample(node["of"], name, ids)]
    if kind == "or":
        simple = [n for n in node["of"] if n["t"] not in ("obj", "list")]
        return sample((simple or node["of"])[0], name, ids)
    return {"str": "x", "int": "1", "num": "1.5", "bool": "true", "map": {"k": "v"}, "any": "x"}.get(
        kind, (node.get("v") or ["x"])[0]
    )


def form(params: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else key
        if isinstance(value, dict):
            pairs += form(value, name)
        elif isinstance(value, list):
            pairs += form({str(i): v for i, v in enumerate(value)}, name)
        else:
            pairs.append((name, str(value)))
    return pairs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    emulator = Emulator(tmp_path_factory.mktemp("spec") / "vendors.db")
    settings = settings_from_emulator(emulator.config())
    http = emulator.client()
    yield emulator, http, settings.stripe.api_base, settings.stripe.secret_key
    http.close()
    emulator.close()


def _ids(emulator: Emulator, http: Any, base: str, key: str) -> dict[str, str]:
    """A fresh object of every kind a path names (a DELETE may remove one)."""

    def post(path: str, data: list[tuple[str, str]]) -> dict[str, Any]:
        answer = send(http, "POST", base + path, key, data)
        assert answer.status_code == 200, answer.text
        return answer.json()

    product = post("/v1/products", [("name", "Spec")])
    price = post(
        "/v1/prices",
        [("product", product["id"]), ("unit_amount", "500"), ("currency", "usd"), ("recurring[interval]", "month")],
    )
    customer = post(
        "/v1/customers",
        [
            ("email", "spec@example.com"),
            ("payment_method", "pm_card_visa"),
            ("invoice_settings[default_payment_method]", "pm_card_visa"),
        ],
    )
    session = post(
        "/v1/checkout/sessions",
        [
            ("mode", "subscription"),
            ("success_url", "https://example.com/ok"),
            ("line_items[0][price]", price["id"]),
            ("line_items[0][quantity]", "1"),
            ("customer", customer["id"]),
        ],
    )
    paid = emulator.stripe.complete_checkout_session(None, session["id"])
    subscription = paid.get("subscription") or session["id"]
    invoice = http.get(base + "/v1/invoices", params={"customer": customer["id"]}, auth=(key, "")).json()["data"][0]
    method = post("/v1/payment_methods", [("type", "card"), ("card[token]", "tok_visa")])
    endpoint = post("/v1/webhook_endpoints", [("url", "https://example.com/h"), ("enabled_events[0]", "*")])
    event = http.get(base + "/v1/events", params={"limit": "1"}, auth=(key, "")).json()["data"][0]
    intent = post("/v1/payment_intents", [("amount", "700"), ("currency", "usd"), ("payment_method", "pm_card_visa")])
    held = post(
        "/v1/payment_intents",
        [
            ("amount", "700"),
            ("currency", "usd"),
            ("payment_method", "pm_card_visa"),
            ("capture_method", "manual"),
            ("confirm", "true"),
        ],
    )
    paid = post(
        "/v1/payment_intents",
        [("amount", "700"), ("currency", "usd"), ("payment_method", "pm_card_visa"), ("confirm", "true")],
    )
    refund = post("/v1/refunds", [("payment_intent", paid["id"]), ("amount", "100")])
    setup = post("/v1/setup_intents", [("payment_method", "pm_card_visa")])
    coupon = post("/v1/coupons", [("percent_off", "10")])
    promo = post("/v1/promotion_codes", [("promotion[type]", "coupon"), ("promotion[coupon]", coupon["id"])])
    plan = post(
        "/v1/plans", [("amount", "500"), ("currency", "usd"), ("interval", "month"), ("product", product["id"])]
    )
    configuration = post("/v1/billing_portal/configurations", [("features[invoice_history][enabled]", "true")])
    clock = post("/v1/test_helpers/test_clocks", [("frozen_time", "1800000000")])
    return {
        "products": product["id"],
        "prices": price["id"],
        "customers": customer["id"],
        "sessions": session["id"],
        "subscriptions": subscription if isinstance(subscription, str) else subscription["id"],
        "invoices": invoice["id"],
        "payment_methods": method["id"],
        "webhook_endpoints": endpoint["id"],
        "events": event["id"],
        "payment_intents": intent["id"],
        "held_intents": held["id"],
        "charges": paid["latest_charge"],
        "refunds": refund["id"],
        "setup_intents": setup["id"],
        "coupons": coupon["id"],
        "promotion_codes": promo["id"],
        "plans": plan["id"],
        "configurations": configuration["id"],
        "test_clocks": clock["id"],
    }


_SHARED: dict[int, dict[str, str]] = {}


def shared_ids(world: Any) -> dict[str, str]:
    """One set of objects for every request that changes none of them for good."""
    if id(world) not in _SHARED:
        _SHARED[id(world)] = _ids(*world)
    return _SHARED[id(world)]


CURSORS = ("starting_after", "ending_before")  # an object of the listed kind


def send(http: Any, method: str, url: str, key: str, pairs: list[tuple[str, str]]) -> Any:
    """As the SDKs send it: the query string for GET and DELETE, a form body for POST."""
    from urllib.parse import urlencode

    if method != "POST":
        return http.request(method, url, params=pairs, auth=(key, ""))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return http.request(method, url, content=urlencode(pairs), headers=headers, auth=(key, ""))


CASES = [(route, name) for route, schema in sorted(ROUTES.items()) for name in sorted(schema["p"])]


@pytest.mark.parametrize(("route", "name"), CASES, ids=[f"{r} {n}" for r, n in CASES])
def test_every_documented_parameter_is_accepted(world, route, name):
    emulator, http, base, key = world
    method, path = route.split(" ", 1)
    schema = ROUTES[route]
    parts = [part for part in path.split("/") if part]
    ids = _ids(emulator, http, base, key) if method == "DELETE" or not path.endswith(("}", "s")) else shared_ids(world)
    if "{id}" in path:
        path = path.replace("{id}", ids[PATH_OBJECT.get(route) or parts[-2 if path.endswith("{id}") else -3]])
    base_params = _resolved(dict(BASE.get(route, {})), ids)
    params = {required: sample(schema["p"][required], required, ids) for required in schema.get("r", [])}
    params |= base_params
    if name == "page":  # a search's own token for its next page: two objects of the kind, one a page
        _ids(emulator, http, base, key)
        query = [("query", "-metadata['none']:'x'"), ("limit", "1")]
        first = send(http, "GET", base + path, key, query).json()
        ids = {**ids, "page": first["next_page"]}
        params["query"], params["limit"] = query[0][1], "1"
    if name in CURSORS and parts[-1] not in ids:  # a nested list: its own first item
        ids = {**ids, parts[-1]: send(http, "GET", base + path, key, []).json()["data"][0]["id"]}
    if name == "id" and method == "POST":  # an id the caller chooses: one not taken yet
        ids = {**ids, "id": f"spec_{uuid.uuid4().hex[:12]}"}
    params[name] = (
        ids["id"]
        if name == "id" and method == "POST"
        else ids["page"]
        if name == "page"
        else ids[parts[-1]]
        if name in CURSORS
        else _with_base(sample(schema["p"][name], name, ids), base_params.get(name))
    )
    answer = send(http, method, base + path, key, form(params))
    error = answer.json().get("error") if answer.status_code >= 400 else None
    refused = error is not None and (
        str(error.get("code", "")).startswith("parameter_") or str(error.get("param", "")).split("[")[0] == name
    )
    assert not refused, f"{route} refused {name}={params[name]!r}: {error}"


@pytest.mark.parametrize(
    ("route", "data", "param", "code"),
    [
        (
            "POST /v1/checkout/sessions",
            [("subscription_data[bogus]", "1")],
            "subscription_data[bogus]",
            "parameter_unknown",
        ),
        (
            "POST /v1/products",
            [("name", "x"), ("marketing_features[0][colour]", "red")],
            "marketing_features[0][colour]",
            "parameter_unknown",
        ),
        ("POST /v1/products", [("description", "no name")], "name", "parameter_missing"),
        ("POST /v1/prices", [("currency", "usd"), ("unit_amount", "ten")], "unit_amount", "parameter_invalid_integer"),
        ("POST /v1/products", [("name", "x"), ("active", "")], "active", "parameter_invalid_empty"),
    ],
)
def test_what_the_description_does_not_allow_is_refused_as_stripe_refuses_it(world, route, data, param, code):
    _, http, base, key = world
    method, path = route.split(" ", 1)
    answer = send(http, method, base + path, key, data)
    error = answer.json()["error"]
    assert answer.status_code == 400 and (error["param"], error.get("code")) == (param, code), error
    assert error["doc_url"] == f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"


def test_an_enum_outside_its_values_is_refused_with_stripes_message(world):
    _, http, base, key = world
    answer = http.post(
        base + "/v1/checkout/sessions", data={"mode": "rental", "success_url": "https://e.x/ok"}, auth=(key, "")
    )
    assert answer.json()["error"]["message"] == "Invalid mode: must be one of payment, setup, or subscription"
    assert answer.json()["error"]["param"] == "mode"


def test_the_description_records_its_source_and_version():
    import stripe

    assert spec()["apiVersion"] == stripe.api_version
    assert "stripe/openapi" in spec()["source"] and stripe.VERSION in spec()["source"]
    assert len(ROUTES) >= 40


def test_one_validation_for_every_route_and_a_backend_split_by_resource():
    """The description drives every route's checks (no per-route parameter lists), and the backend is a package of
    resource modules none over 600 lines."""
    from pathlib import Path

    import emulator.stripe_http as http_layer

    assert not hasattr(http_layer, "ACCEPTS")
    assert set(http_layer.UNDOCUMENTED) == {
        ("GET", "/v1/payment_pages/{id}"),
        ("POST", "/v1/payment_pages/{id}/confirm"),
    }
    package = Path(http_layer.__file__).with_name("stripe_backend")
    sizes = {p.name: len(p.read_text().splitlines()) for p in package.glob("*.py")}
    assert len(sizes) >= 7 and max(sizes.values()) <= 600, sizes
