"""The platform's own HTTP routes (front-auth-api, oauth-api, api-multi) on the emulator app.
Each route parses, calls one `dreamcli.platform` function, and answers in the guide's JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dreamcli.errors import DreamError
from dreamcli.platform import onboarding
from dreamcli.stores.ports import Store
from dreamcli.vendors.errors import WebhookSignatureError
from dreamcli.vendors.settings import Vendors


@dataclass
class PlatformServices:
    store: Store
    vendors: Vendors


def front_auth_routes(services: Callable[[], PlatformServices]) -> list[Route]:
    async def stripe_webhook(request: Request) -> Response:
        payload = await request.body()
        signature = request.headers.get("stripe-signature")
        try:
            outcome = await run_in_threadpool(onboarding.handle_stripe_webhook, services().vendors, payload, signature)
        except WebhookSignatureError as exc:
            return JSONResponse({"error": "Invalid signature", "message": str(exc)}, status_code=400)
        except DreamError as exc:
            return JSONResponse({"error": "Webhook failed", "message": str(exc)}, status_code=500)
        return JSONResponse({"received": True, "outcome": outcome})

    return [Route("/webhook/stripe", stripe_webhook, methods=["POST"])]
