"""Who may use the console, and the headers every answer carries.

- Signing in: `dream console` prints an address holding a one-time token; opening it swaps the token for a session
  cookie (HttpOnly, SameSite=Strict, Path=/) and the token is spent: a copy of the address in a shell history or
  a screenshot opens nothing. Tokens and sessions live in this process alone: stopping the console signs out.
- CSRF: every form carries the session's own token, checked in constant time on each POST; a POST that says it
  comes from another origin (`Origin`, `Sec-Fetch-Site`) is refused before that. SameSite=Strict already keeps
  the cookie off other sites' requests: two locks.
- DNS rebinding: a request whose Host is not this console's own address is refused (a page of another site,
  its name pointed at 127.0.0.1, cannot read the console).
- Every answer: a Content-Security-Policy allowing only this origin's own script, style and images (no inline
  script, no external request), no framing, no referrer beyond this origin, no caching, no MIME sniffing."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "dream_console"
SESSION_TTL_S = 12 * 3600  # a session not used for this long is signed out

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # no-referrer would make a form's Origin "null"
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


@dataclass
class Session:
    csrf: str
    last_used: float


@dataclass
class Sessions:
    """The console's sign-in token (one use) and its sessions."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    clock: object = time.monotonic
    _spent: bool = False
    _sessions: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sign_in(self, presented: str) -> tuple[str, Session] | None:
        """A new session for the right, unspent token; None otherwise (wrong, or used once already)."""
        with self._lock:
            if self._spent or not hmac.compare_digest(presented.encode(), self.token.encode()):
                return None
            self._spent = True
            session_id = secrets.token_urlsafe(32)
            session = Session(csrf=secrets.token_urlsafe(32), last_used=self._now())
            self._sessions[session_id] = session
            return session_id, session

    def session(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            now = self._now()
            for stale in [key for key, s in self._sessions.items() if now - s.last_used > SESSION_TTL_S]:
                del self._sessions[stale]
            found = next(
                (s for key, s in self._sessions.items() if hmac.compare_digest(key.encode(), session_id.encode())),
                None,
            )
            if found is not None:
                found.last_used = now
            return found

    def sign_out(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def _now(self) -> float:
        return float(self.clock())  # type: ignore[operator]


def csrf_ok(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), session.csrf.encode())


def same_origin(headers: dict[str, str], origin: str) -> bool:
    """False when the browser says the request comes from elsewhere (no header: a client that is not a browser,
    which has no cookie to ride on unless given one)."""
    said = headers.get("origin")
    if said is not None and said != origin:
        return False
    site = headers.get("sec-fetch-site")
    return site in (None, "same-origin", "none")


def allowed_hosts(port: int) -> frozenset[str]:
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})
