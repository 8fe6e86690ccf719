"""Verify Clerk session and JWT-template tokens: RS256 only, JWKS cached (refetched on an unknown
`kid`), `iss` checked (Clerk's SDKs do not), exp/nbf with 5 s leeway, optional authorized parties."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import jwt
from jwt.algorithms import RSAAlgorithm

from dreamcli.vendors.errors import TokenError

LEEWAY_SECONDS = 5
JWKS_CACHE_SECONDS = 300
REFETCH_MIN_SECONDS = 5  # an unknown kid refetches at most this often (a flood of forged kids cannot hammer the JWKS)


class JWTVerifier:
    def __init__(
        self,
        fetch_jwks: Callable[[], dict[str, Any]],
        issuer: str,
        *,
        authorized_parties: Sequence[str] | None = None,
        leeway: int = LEEWAY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch_jwks
        self.issuer = issuer
        self.authorized_parties = list(authorized_parties) if authorized_parties else None
        self.leeway = leeway
        self.clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self.fetches = 0

    def _refresh(self) -> None:
        keys: dict[str, Any] = {}
        for jwk in self._fetch().get("keys", []):
            if jwk.get("kty") == "RSA" and jwk.get("kid"):
                keys[jwk["kid"]] = RSAAlgorithm.from_jwk(json.dumps(jwk))
        self._keys = keys
        self._fetched_at = self.clock()
        self.fetches += 1

    def _key(self, kid: str) -> Any:
        now = self.clock()
        if self._fetched_at is None or now - self._fetched_at > JWKS_CACHE_SECONDS:
            self._refresh()
        elif kid not in self._keys and now - self._fetched_at >= REFETCH_MIN_SECONDS:
            self._refresh()
        if kid not in self._keys:
            raise TokenError("unknown_key", f"token refused: signed with an unknown key (kid {kid!r})")
        return self._keys[kid]

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or TokenError naming why it is refused."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed", "token refused: not a well-formed JWT") from None
        if header.get("alg") != "RS256":
            raise TokenError("algorithm", f"token refused: algorithm {header.get('alg')!r} is not allowed (RS256 only)")
        kid = header.get("kid")
        if not kid:
            raise TokenError("unknown_key", "token refused: no kid in its header")
        key = self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenError("signature", "token refused: signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise TokenError("malformed", f"token refused: {exc}") from None
        now = self.clock()
        for claim in ("exp", "nbf", "iat", "sub", "iss"):
            if claim not in claims:
                raise TokenError("claims", f"token refused: missing {claim}")
        if not isinstance(claims["exp"], (int, float)) or not isinstance(claims["nbf"], (int, float)):
            raise TokenError("claims", "token refused: exp and nbf must be numbers")
        if now > claims["exp"] + self.leeway:
            raise TokenError("expired", f"token refused: expired {int(now - claims['exp'])} s ago")
        if now + self.leeway < claims["nbf"]:
            raise TokenError("not_yet_valid", f"token refused: not valid for another {int(claims['nbf'] - now)} s")
        if claims["iss"] != self.issuer:
            raise TokenError("issuer", f"token refused: issuer {claims['iss']!r} is not {self.issuer!r}")
        if self.authorized_parties is not None and claims.get("azp") not in self.authorized_parties:
            raise TokenError(
                "authorized_party", f"token refused: authorized party {claims.get('azp')!r} is not allowed"
            )
        return claims
