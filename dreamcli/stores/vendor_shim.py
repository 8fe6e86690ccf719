"""The entry module `dream dev` runs a worker behind: the worker's own code unchanged, its fetches to Stripe's and
Clerk's hosts (api.stripe.com, connect.stripe.com, api.clerk.com) sent to dream's emulated vendors instead, so a
worker written for the real ones, as the guide's are (`new Stripe(env.STRIPE_SECRET_KEY)`,
`createClerkClient({ secretKey })`), needs no base-URL setting to run locally. Every other fetch goes where it was
going. The files are written in dream's private folder, never in the user's."""

from __future__ import annotations

import json
from pathlib import Path

from dreamcli.private_files import write_private

# Which emulated vendor answers each real host (the emulator serves each vendor's API at the root of its port).
VENDOR_HOSTS = {"api.stripe.com": "stripe", "connect.stripe.com": "stripe", "api.clerk.com": "clerk"}

SHIM = """// dream dev: this worker's fetches to the vendors' hosts go to dream's emulated vendors.
const HOSTS = __HOSTS__;
const passThrough = globalThis.fetch;
globalThis.fetch = function fetch(input, init) {
  const request = new Request(input, init);
  const url = new URL(request.url);
  const base = HOSTS[url.hostname];
  if (base === undefined) return passThrough(request);
  return passThrough(new Request(new URL(url.pathname + url.search, base), request));
};
"""


def write_entry(folder: Path, name: str, main: Path, vendor_urls: dict[str, str]) -> Path:
    """`folder/NAME-entry.mjs`: the shim first (evaluated before any module of the worker's, so a client made at
    the top of the worker's code sees it too), then every export of the worker's own entry `main`: its default
    handler and its named classes (Durable Objects, entrypoints)."""
    hosts = {host: vendor_urls[vendor] for host, vendor in VENDOR_HOSTS.items()}
    shim = folder / f"{name}-vendors.mjs"
    entry = folder / f"{name}-entry.mjs"
    write_private(shim, SHIM.replace("__HOSTS__", json.dumps(hosts)))
    source = json.dumps(str(main.resolve()))
    write_private(
        entry, f"import {json.dumps(str(shim))};\nexport * from {source};\nexport {{ default }} from {source};\n"
    )
    return entry
