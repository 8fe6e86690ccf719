"""Which namespace ids and D1 database stand behind the logical names.

The default is the guide's topology; the wrangler and cloudflare stores take it from the workers'
`wrangler.toml` / `wrangler.jsonc` files instead (`dreamcli.stores.discovery`).
"""

from __future__ import annotations

from dataclasses import dataclass

PLATFORM_TOKENS = "platform-tokens"
PLATFORM_USAGE = "platform-usage"
API_TOKENS = "api-tokens"
API_USAGE = "api-usage"


@dataclass(frozen=True, slots=True)
class NamespaceRef:
    """A logical namespace, its Cloudflare id and the worker bindings that reach it."""

    name: str
    id: str
    bindings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DatabaseRef:
    """The D1 database: binding name, database name and id."""

    binding: str
    name: str
    id: str


@dataclass(frozen=True)
class Topology:
    namespaces: tuple[NamespaceRef, ...]
    database: DatabaseRef

    def namespace(self, name_or_id: str) -> NamespaceRef | None:
        for ref in self.namespaces:
            if name_or_id in (ref.name, ref.id):
                return ref
        return None

    def names(self) -> list[str]:
        return [ref.name for ref in self.namespaces]


GUIDE_TOPOLOGY = Topology(
    namespaces=(
        NamespaceRef(
            PLATFORM_TOKENS,
            "d09d8bf4e63a47c495384e9ed9b4ec7e",
            ("front-auth-api:TOKENS_KV", "oauth-api:PLATFORM_TOKENS_KV"),
        ),
        NamespaceRef(PLATFORM_USAGE, "6a3c39a8ee9b46859dc237136048df25", ("front-auth-api:USAGE_KV",)),
        NamespaceRef(
            API_TOKENS,
            "a9f3331b0c8b48d58c32896482484208",
            ("api-multi:TOKENS_KV", "oauth-api:CUSTOMER_TOKENS_KV"),
        ),
        NamespaceRef(API_USAGE, "10cc8b9f46f54a6e8d89448f978aaa1f", ("api-multi:USAGE_KV",)),
    ),
    database=DatabaseRef(binding="DB", name="dream-api", id="00000000-0000-4000-8000-00000000d1d1"),
)
