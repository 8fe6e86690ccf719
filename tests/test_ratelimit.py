"""The cloudflare store stays under Cloudflare's API rate limit (1,200 requests / 5 minutes per token; past it every
call is refused for 5 minutes) instead of running into it, and follows the Ratelimit headers."""

from __future__ import annotations

import httpx

from dreamcli.stores.cloudflare import open_cloudflare_store
from dreamcli.stores.ratelimit import Pacer, parse_items
from dreamcli.topology import GUIDE_TOPOLOGY
from tests.conftest import served_cloudflare

# Cloudflare's documented limit: 1,200 requests in any 5 minutes per token; dream keeps 50 for the token's other
# users. Every expected figure below is worked out from these numbers, not from the pacer's code.
CLOUDFLARE_LIMIT, CLOUDFLARE_WINDOW_S, LEFT_FOR_OTHERS = 1200, 300, 50
BUDGET = CLOUDFLARE_LIMIT - LEFT_FOR_OTHERS  # 1,150 a window


def paced(env: dict[str, str], fake: FakeTime) -> tuple[Pacer, object, object]:
    """A pacer and the Cloudflare API client it paces, on the fake clock, and a namespace read through them."""
    from dreamcli.stores.cloudflare import CloudflareAPI, CloudflareKVNamespace

    pacer = Pacer(clock=fake.clock, sleep=fake.sleep)
    api = CloudflareAPI(
        env["CLOUDFLARE_API_TOKEN"],
        env["CLOUDFLARE_ACCOUNT_ID"],
        env["CLOUDFLARE_BASE_URL"],
        sleep=fake.sleep,
        pacer=pacer,
    )
    return pacer, api, CloudflareKVNamespace(api, GUIDE_TOPOLOGY.namespace("api-usage").id)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_no_window_ever_holds_more_than_the_budget():
    fake = FakeTime()
    pacer = Pacer(clock=fake.clock, sleep=fake.sleep)
    sends = []
    for _ in range(3000):  # as fast as the caller can: 100 requests a second
        pacer.before()
        sends.append(fake.now)
        fake.now += 0.01
    for index, start in enumerate(sends):
        in_window = sum(1 for t in sends[index : index + 1300] if t < start + 300)
        assert in_window <= 1150  # the documented 1,200 less 50 for the token's other users
    assert sends[-1] >= 2 * 300  # 3,000 requests take over two windows, not 30 s into a 5-minute block


def test_the_headers_correct_the_pacer():
    assert parse_items('"default";r=50;t=30') == {"r": 50, "t": 30}
    fake = FakeTime()
    pacer = Pacer(clock=fake.clock, sleep=fake.sleep)
    pacer.after({"ratelimit-policy": '"burst";q=100;w=60'})
    assert (pacer.quota, pacer.window_s, pacer.budget) == (100, 60.0, 90)
    pacer.before()
    pacer.after({"ratelimit": '"default";r=3;t=17', "ratelimit-policy": '"burst";q=100;w=60'})
    pacer.before()  # the quota is all but spent: wait for the reset Cloudflare named
    assert fake.now == 17 and pacer.waited == 17


def test_the_store_never_meets_a_429_from_the_emulated_limit(tmp_path):
    """A limit other than Cloudflare's default (40 in 2 s): the pacer learns it from the first answer's headers."""
    fake = FakeTime()
    with served_cloudflare(tmp_path / "cf.db") as (emulator, env):
        knobs = emulator.cloudflare_knobs
        knobs.rate_limit, knobs.window_s, knobs.clock = 40, 2.0, fake.clock
        _, api, namespace = paced(env, fake)
        for _ in range(100):
            namespace.list(limit=10)
        api.http.close()
        assert knobs.rejected == 0  # paced under the limit, never refused
        assert fake.now >= 2 * 2.0  # 100 requests at fewer than 40 a window: more than two windows


def test_a_rest_scan_lists_first_says_its_size_and_costs_no_more_requests(tmp_path, dream):
    from dreamcli.platform import synthetic

    with served_cloudflare(tmp_path / "cf.db") as (_, env):
        store = open_cloudflare_store(env)
        synthetic.seed(store, 300)  # 2,400 platform-tokens keys
        namespace = store.kv("platform-tokens")
        told = []

        class Told:
            def listed(self, keys, reads, seconds):
                told.append((keys, reads, seconds))

        namespace.scan_observer = Told()
        before = namespace.api.requests
        scanned = list(namespace.scan())
        used = namespace.api.requests - before
        store.close()
        assert told == [(len(scanned), -(-len(scanned) // 100), 0)] and len(scanned) == 2400
        assert used == -(-2400 // 1000) + 2400 // 100  # 3 list pages + 24 bulk gets: the lower bound
        shown = dream("--store", "cloudflare", "kv", "verify", env=env)
        assert shown.exit_code == 0, shown.stderr
        assert "platform-tokens: 2,400 keys: 24 bulk reads, within the rate limit's window" in shown.stderr
        assert "api-tokens: " in shown.stderr


def test_the_estimate_of_a_large_scan():
    pacer = Pacer()
    assert pacer.seconds_for(1000) == 0  # within one window's budget
    # 1.2M keys: 12,000 bulk reads; the first 1,150 at once, the rest at 1,150 a window: about 47 minutes
    expected = (12_000 - BUDGET) / BUDGET * CLOUDFLARE_WINDOW_S
    assert round(expected / 60) == 47 and abs(pacer.seconds_for(12_000) - expected) < 1


def test_a_scan_longer_than_a_few_minutes_suggests_the_worker(tmp_path, capsys):
    from dreamcli.cli.kv import _report_long_scans

    with served_cloudflare(tmp_path / "cf.db") as (_, env):
        store = open_cloudflare_store(env)
        _report_long_scans(store)
        namespace = store.kv("platform-tokens")
        namespace.scan_observer.listed(90_000, 900, 0)  # within the window's budget: nothing to suggest
        assert "--via-worker" not in capsys.readouterr().err
        pacer = namespace.api.pacer
        namespace.scan_observer.listed(1_200_000, 12_000, pacer.seconds_for(12_000))
        told = capsys.readouterr().err
        store.close()
    assert "platform-tokens: 1,200,000 keys: 12,000 bulk reads, about 47 min at the rate limit" in told
    assert "--via-worker reads it inside Cloudflare instead" in told


def test_at_cloudflares_own_limit_the_scan_is_never_blocked_and_takes_what_was_estimated(tmp_path):
    """1,200 requests in any 5 minutes, then every call refused for 5 minutes: enforced by the emulated REST API on
    a clock shared with the pacer (its waits move the clock, so 3,000 requests take no real minutes)."""
    fake = FakeTime()
    with served_cloudflare(tmp_path / "cf.db") as (emulator, env):
        knobs = emulator.cloudflare_knobs
        knobs.rate_limit, knobs.window_s, knobs.clock = 1200, 300.0, fake.clock
        pacer, api, namespace = paced(env, fake)
        estimate = pacer.seconds_for(3000)
        for _ in range(3000):
            namespace.list(limit=10)
            fake.now += 0.001
        api.http.close()
        assert knobs.rejected == 0 and api.requests == 3000  # never blocked, nothing retried
        # 1,150 a window: 3,000 requests need three windows, so two waits of a window each
        assert 2 * CLOUDFLARE_WINDOW_S <= fake.now < 2 * CLOUDFLARE_WINDOW_S + 5
        # the estimate verify prints: the first 1,150 at once, the other 1,850 at 1,150 a window
        assert abs(estimate - (3000 - BUDGET) / BUDGET * CLOUDFLARE_WINDOW_S) < 1
        # Unpaced, the same limit blocks the token: the 1,201st call and every one for 5 minutes after it.
        fake.now += 1000
        url = f"{env['CLOUDFLARE_BASE_URL']}/accounts/{env['CLOUDFLARE_ACCOUNT_ID']}{namespace.path}/keys"
        with httpx.Client(headers={"Authorization": f"Bearer {env['CLOUDFLARE_API_TOKEN']}"}) as http:
            statuses = [http.get(url).status_code for _ in range(1202)]
            fake.now += 299
            still = http.get(url)
            fake.now += 2
            after = http.get(url)
    assert statuses[:1200] == [200] * 1200 and statuses[1200:] == [429, 429]
    assert still.status_code == 429 and still.json()["errors"][0]["code"] == 971
    assert still.headers["ratelimit"] == '"default";r=0;t=1' and still.headers["retry-after"] == "1"
    assert after.status_code == 200


def test_the_served_limit_is_asked_for_in_cloudflares_terms(dream):
    for bad in ("1200", "1200/0", "x/300", "0/300"):
        refused = dream("emulator", "serve", "--cloudflare-rate-limit", bad)
        assert refused.exit_code == 2 and "expected REQUESTS/SECONDS, e.g. 1200/300" in refused.stderr
