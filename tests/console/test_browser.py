"""The console in a real browser: Debian's chromium, headless, driven by Playwright for Python. Signs in with the
printed address, visits every page, rotates and revokes a key, repairs a drifted store, resends a webhook delivery
(each checked in the store afterwards), moves by keyboard, finds every field by its label, and writes a screenshot of
each page (to DREAM_SCREENSHOTS as well when it names a folder: the README's pictures come from there)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from dreamcli import layout
from dreamcli.cli.context import AppContext
from dreamcli.console.pages import Console
from dreamcli.console.serve import ConsoleServer
from dreamcli.platform import keys, replication
from dreamcli.topology import API_TOKENS
from tests.peers import CHROMIUM

playwright = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is a test extra: pip install -e '.[test]'"
)

pytestmark = [pytest.mark.socket, pytest.mark.slow, pytest.mark.peer("chromium")]


@pytest.fixture
def world(dream, tmp_path):
    """A store as an operator's looks after a while: 40 seeded developers (some drifted, some paying, their end-users'
    calls), and one more through the whole flow; the console served over it."""
    assert dream("seed", "--platforms", "40", "--drift", "0.25", "--paying", "0.5").exit_code == 0
    flow = dream.json("flow", "run", "--json")
    run = AppContext(store_spec=str(tmp_path / "store.db"))
    server = ConsoleServer(Console(run.store(), run.vendors(), run.emulated()), port=0)
    server.start()
    yield server, flow
    server.stop()
    run.close()


@pytest.fixture
def browser():
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


def _shots(tmp_path: Path) -> list[Path]:
    folders = [tmp_path / "screens"]
    if os.environ.get("DREAM_SCREENSHOTS"):
        folders.append(Path(os.environ["DREAM_SCREENSHOTS"]))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def test_an_operator_signs_in_and_works_through_every_page(world, browser, tmp_path):
    server, flow = world
    store = server.console.store
    plt, pk = flow["platformId"], flow["publishableKey"]
    folders = _shots(tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    outside: list[str] = []
    page.on("request", lambda request: outside.append(request.url) if not request.url.startswith(server.url) else None)

    def shot(name: str) -> None:
        """The page's screenshot, once every field has a label and every control a name."""
        unnamed = page.evaluate(
            """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                 .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))
                 .concat([...document.querySelectorAll('button, a')].filter(e => !e.textContent.trim()
                          && !e.getAttribute('aria-label')))
                 .map(e => e.outerHTML)"""
        )
        assert unnamed == [], (name, unnamed)
        assert page.locator("h1").count() == 1 and page.locator("html[lang=en]").count() == 1
        for folder in folders:
            page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    # Signing in: the printed address, once.
    page.goto(server.sign_in_url())
    assert page.url == server.url + "/"
    assert page.get_by_role("heading", name="Overview", level=1).is_visible()
    # The live counters arrive by server-sent events (the script is the console's own: the CSP allows no other).
    page.wait_for_function("document.querySelector('[data-live=callsThisMonth]').textContent !== '…'")
    assert page.locator("[data-live=webhooksFailed]").inner_text() == "0"
    shot("overview")
    busiest = page.get_by_role("table").filter(has_text="customers").get_by_role("link").first
    busiest_id = busiest.inner_text()
    busiest.click()
    page.wait_for_url(f"{server.url}/platforms/{busiest_id}")
    assert page.get_by_role("img", name=f"API calls per day, {busiest_id}").is_visible()  # the chart, labelled
    shot("platform")
    page.go_back()

    # Keyboard: the first Tab reaches the skip link, which moves focus to the content; Tab onwards reaches the nav.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(8):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Platforms":
            break
    else:
        pytest.fail("Tab never reached the Platforms link")
    page.keyboard.press("Enter")
    page.wait_for_url(server.url + "/platforms")

    # Every field has a label: found by it, typed into, sent with Enter.
    page.get_by_label("Find a platform by id, developer id or e-mail").fill(plt)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server.url}/platforms/{plt}")
    assert page.get_by_role("heading", name=plt).is_visible()

    # Rotate with a grace period: the new secret shows once; the store has both pairs.
    page.get_by_role("row").filter(has_text=pk).get_by_role("link", name="Rotate").click()
    page.get_by_label("How long the old pair keeps working").select_option("24h")
    page.get_by_role("button", name="Rotate this pair").click()
    assert page.locator("code.secret").count() == 1, page.locator("main").inner_text()
    secret = page.locator("code.secret").inner_text()
    assert secret.startswith("sk_") and page.get_by_role("alert").is_visible()
    pairs = {p.publishable_key: p for p in keys.list_keys(store, plt)}
    now = store.clock()
    assert pairs[pk].status(now) == "expiring" and len(pairs) == 2
    (new_pk,) = set(pairs) - {pk}

    # Revoke the old pair behind its confirmation.
    page.get_by_role("link", name=f"Back to {plt}").click()
    assert secret not in page.content()
    page.get_by_role("row").filter(has_text=pk).get_by_role("link", name="Revoke").click()
    page.get_by_role("button", name="Revoke this pair").click()
    page.wait_for_url(f"{server.url}/platforms/{plt}")
    assert page.get_by_role("status").filter(has_text="revoked").is_visible()
    pairs = {p.publishable_key: p for p in keys.list_keys(store, plt)}
    assert pairs[pk].status(store.clock()) == "revoked" and pairs[new_pk].status(store.clock()) == "active"

    # Replication: verify finds the seeded drift (and a copy deleted now); the repair applies with live progress.
    store.kv(API_TOKENS).delete(layout.publishable_key_platform(new_pk))
    page.get_by_role("navigation").get_by_role("link", name="Replication").click()
    page.get_by_role("button", name="Verify now").click()
    page.wait_for_url(server.url + "/replication", timeout=60_000)  # the progress page opens the result when done
    findings = page.locator("strong").filter(has_text=re.compile(r"^[1-9][\d,]* findings$"))
    assert findings.is_visible()
    assert layout.publishable_key_platform(new_pk) in page.content()
    shot("replication")
    page.get_by_role("button", name="Review the repair").click()
    apply = page.get_by_role("button", name=re.compile(r"Apply \d+ actions"))
    shot("repair")
    apply.click()
    page.wait_for_url(server.url + "/replication", timeout=60_000)
    assert page.locator("strong").filter(has_text=re.compile(r"^0 findings$")).is_visible()
    assert replication.verify(store).clean
    assert store.kv(API_TOKENS).get(layout.publishable_key_platform(new_pk)) is not None

    # Webhooks: resend a delivery; the outbox has its new attempt.
    page.get_by_role("navigation").get_by_role("link", name="Webhooks").click()
    emulator = server.console.emulator
    before = len(emulator.deliveries_list(limit=1000))
    first = page.get_by_role("button", name=re.compile(r"^Resend evt_")).first
    event_id = first.get_attribute("aria-label").split()[1]
    shot("webhooks")
    first.click()
    page.wait_for_url(server.url + "/webhooks")
    assert page.get_by_role("status").filter(has_text=f"{event_id} resent to").is_visible()
    rows = emulator.deliveries_list(limit=1000)
    assert len(rows) == before + 1 and rows[0]["id"] == event_id

    # Vendors: Clerk's developers, one opened.
    page.get_by_role("navigation").get_by_role("link", name="Vendors").click()
    shot("vendors")
    page.get_by_role("link", name="user", exact=True).first.click()
    page.get_by_role("link", name=flow["userId"]).click()
    assert page.get_by_role("heading", name=flow["userId"]).is_visible()

    # KV: a namespace and a prefix chosen by their labels; a secret-holding value masked.
    page.get_by_role("navigation").get_by_role("link", name="KV").click()
    page.get_by_label("Namespace").select_option("platform-tokens")
    page.get_by_label("Prefix").fill(f"user:{flow['userId']}:")
    page.get_by_role("button", name="List").click()
    shot("kv")
    page.get_by_role("link", name=layout.user_stripe_token(flow["userId"])).click()
    assert "accessToken: (secret)" in page.locator("pre.json").inner_text()

    assert problems == [], problems  # no script error, no CSP violation
    assert outside == [], outside  # no request left the console
