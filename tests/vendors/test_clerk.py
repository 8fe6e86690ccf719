"""The Clerk client and JWT verifier against the emulator, in-process and over a loopback socket."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from svix.webhooks import Webhook, WebhookVerificationError

from dreamcli.vendors.clerk import ClerkClient
from dreamcli.vendors.errors import TokenError, VendorError, VendorNotFound
from dreamcli.vendors.jwt_verify import JWTVerifier


def _mint(reached, instance, user_id, **body):
    response = reached.http.post(
        f"{reached.base_url}/_emulator/clerk/{instance}/tokens",
        json={"user_id": user_id, **body},
        headers=reached.emulator.admin_headers(),
    )
    assert response.status_code == 200, response.text
    return response.json()["jwt"]


def test_users_and_metadata_deep_merge(reached):
    clerk = reached.vendors.clerk["end-user-api"]
    user = clerk.create_user(
        "ann@example.com", public_metadata={"publishableKey": "pk_1", "plan": "free", "nested": {"a": 1, "b": 2}}
    )
    assert user["id"].startswith("user_") and user["email_addresses"][0]["email_address"] == "ann@example.com"
    merged = clerk.update_metadata(
        user["id"], public={"plan": "pro", "nested": {"b": None, "c": 3}, "publishableKey": None}
    )
    assert merged["public_metadata"] == {"plan": "pro", "nested": {"a": 1, "c": 3}}
    assert clerk.get_user(user["id"])["public_metadata"] == merged["public_metadata"]
    assert [u["id"] for u in clerk.list_users(email="ann@example.com")] == [user["id"]]
    assert clerk.list_users(email="nobody@example.com") == []
    clerk.create_user("bob@example.com")
    assert len(clerk.list_users(limit=1)) == 1 and len(clerk.list_users(limit=10)) == 2


def test_instances_are_separate(reached):
    dev = reached.vendors.clerk["dream-api"].create_user("dev@example.com")
    with pytest.raises(VendorNotFound, match=f"No user was found with id {dev['id']}"):
        reached.vendors.clerk["end-user-api"].get_user(dev["id"])


def test_clerk_errors(reached):
    clerk = reached.vendors.clerk["dream-api"]
    clerk.create_user("dup@example.com")
    with pytest.raises(VendorError, match="That email address is taken") as caught:
        clerk.create_user("dup@example.com")
    assert caught.value.status == 422 and caught.value.code == "form_identifier_exists"
    with pytest.raises(VendorNotFound):
        clerk.update_metadata("user_missing", public={"a": 1})
    bad = ClerkClient(reached.http, "sk_test_nottherightkey", f"{reached.base_url}/clerk")
    with pytest.raises(VendorError, match="Clerk Secret Key is invalid") as caught:
        bad.list_users()
    assert caught.value.status == 401 and "nottherightkey" not in str(caught.value)
    with pytest.raises(VendorError, match="limit must be 1..500"):
        clerk.list_users(limit=501)


def test_jwks_on_backend_and_frontend_api_agree(reached):
    backend = reached.vendors.clerk["dream-api"].jwks()
    frontend = reached.http.get(f"{reached.base_url}/clerk/dream-api/.well-known/jwks.json").json()
    assert backend == frontend
    key = backend["keys"][0]
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig") and key["kid"]
    other = reached.http.get(f"{reached.base_url}/clerk/end-user-api/.well-known/jwks.json").json()
    assert other["keys"][0]["kid"] != key["kid"]


def test_template_tokens_carry_the_guides_claims(reached, clock):
    dev_clerk = reached.vendors.clerk["dream-api"]
    dev = dev_clerk.create_user("dev@example.com", public_metadata={"plan": "paid", "publishableKey": "pk_x"})
    claims = reached.vendors.verifiers["dream-api"].verify(_mint(reached, "dream-api", dev["id"]))
    now = int(clock())
    assert claims["plan"] == "paid" and "publishableKey" not in claims  # the guide: dream-api carries only plan
    assert (claims["sub"], claims["iat"], claims["nbf"], claims["exp"]) == (dev["id"], now, now - 5, now + 60)
    assert (
        claims["iss"] == "https://dream-api.clerk.dream.test"
        and claims["azp"] == "http://localhost:5173"
        and claims["jti"]
    )
    customer = reached.vendors.clerk["end-user-api"].create_user(
        "c@example.com", public_metadata={"publishableKey": "pk_live_a", "plan": "pro"}
    )
    end_claims = reached.vendors.verifiers["end-user-api"].verify(_mint(reached, "end-user-api", customer["id"]))
    assert end_claims["publishableKey"] == "pk_live_a" and "plan" not in end_claims
    bare = reached.vendors.clerk["end-user-api"].create_user("d@example.com")
    assert (
        reached.vendors.verifiers["end-user-api"].verify(_mint(reached, "end-user-api", bare["id"]))["publishableKey"]
        is None
    )


def test_token_rejections(reached, clock):
    clerk = reached.vendors.clerk["end-user-api"]
    verifier = reached.vendors.verifiers["end-user-api"]
    user = clerk.create_user("u@example.com", public_metadata={"publishableKey": "pk"})
    token = _mint(reached, "end-user-api", user["id"])
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})

    def expect(reason, candidate, verifier=verifier):
        with pytest.raises(TokenError) as caught:
            verifier.verify(candidate)
        assert caught.value.reason == reason, caught.value

    # expired (beyond the 5 s leeway) and not yet valid
    clock.advance(60 + 5)
    assert verifier.verify(token)["sub"] == user["id"]
    clock.advance(1)
    expect("expired", token)
    clock.advance(-66 - 10)  # iat - 10 = nbf - 5: still inside the leeway
    assert verifier.verify(token)["sub"] == user["id"]
    clock.advance(-1)
    expect("not_yet_valid", token)
    clock.advance(11)

    # signed with another key under the same kid
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    expect("signature", jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": header["kid"]}))
    # alg none, and HS256 with the public key as the secret
    expect("algorithm", jwt.encode(claims, None, algorithm="none"))
    public_pem = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(clerk.jwks()["keys"][0])).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = ".".join(token.split(".")[:2])
    hs_header = (
        base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}).encode())
        .rstrip(b"=")
        .decode()
    )
    body = forged.split(".")[1]
    signature = (
        base64.urlsafe_b64encode(hmac.new(public_pem, f"{hs_header}.{body}".encode(), hashlib.sha256).digest())
        .rstrip(b"=")
        .decode()
    )
    expect("algorithm", f"{hs_header}.{body}.{signature}")
    # a token of the other Clerk instance: another key, and another issuer
    dev = reached.vendors.clerk["dream-api"].create_user("d@example.com")
    expect("unknown_key", _mint(reached, "dream-api", dev["id"]))
    # a verifier that expects another issuer refuses a token whose key it does know
    other_issuer = JWTVerifier(clerk.jwks, "https://someone-else.clerk.accounts.dev", clock=clock)
    expect("issuer", token, other_issuer)
    # authorized parties
    strict = JWTVerifier(clerk.jwks, verifier.issuer, authorized_parties=["https://app.example.com"], clock=clock)
    expect("authorized_party", token, strict)
    ok = _mint(reached, "end-user-api", user["id"], azp="https://app.example.com")
    assert strict.verify(ok)["azp"] == "https://app.example.com"
    expect("malformed", "not.a.jwt")
    expect("malformed", "garbage")


def test_jwks_is_cached_and_refetched_on_unknown_kid(reached, clock):
    clerk = reached.vendors.clerk["end-user-api"]
    fetches = []

    def fetch():
        fetches.append(1)
        return clerk.jwks()

    verifier = JWTVerifier(fetch, "https://end-user-api.clerk.dream.test", clock=clock)
    user = clerk.create_user("v@example.com")
    for _ in range(3):
        verifier.verify(_mint(reached, "end-user-api", user["id"]))
    assert len(fetches) == 1
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(_mint(reached, "end-user-api", user["id"]), options={"verify_signature": False})
    unknown = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "kid_rotated"})
    clock.advance(6)
    with pytest.raises(TokenError):
        verifier.verify(unknown)
    assert len(fetches) == 2  # one refetch for the unknown kid
    with pytest.raises(TokenError):
        verifier.verify(unknown)
    assert len(fetches) == 2  # not again within the refetch interval
    clock.advance(301)
    verifier.verify(_mint(reached, "end-user-api", user["id"]))
    assert len(fetches) == 3  # the cache expired after 5 minutes


def test_svix_signed_user_webhooks(reached, receiver, clock):
    clock.now = time.time()  # the svix verifier checks freshness against the wall clock
    recorder, hook_url = receiver
    registered = reached.http.post(
        f"{reached.base_url}/_emulator/clerk/end-user-api/webhooks",
        json={"url": hook_url},
        headers=reached.emulator.admin_headers(),
    ).json()
    clerk = reached.vendors.clerk["end-user-api"]
    user = clerk.create_user("w@example.com")
    clerk.update_metadata(user["id"], public={"plan": "pro"})
    clerk.delete_user(user["id"])
    assert reached.emulator.settle()
    verified = []
    for message in recorder.received:
        Webhook(registered["secret"]).verify(message["body"], message["headers"])  # raises unless signed right
        payload = json.loads(message["body"])
        verified.append((payload["type"], payload["data"]["id"]))
    assert verified == [("user.created", user["id"]), ("user.updated", user["id"]), ("user.deleted", user["id"])]
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"x" * 24).decode()).verify(
            recorder.received[0]["body"], recorder.received[0]["headers"]
        )
    tampered = dict(recorder.received[0]["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(registered["secret"]).verify(recorder.received[0]["body"] + b" ", tampered)


def test_user_list_filters_and_count(reached):
    """`GET /v1/users` filters as Clerk does (they were ignored: filtering by id listed every other user)."""
    secret = reached.emulator.config()["clerk"]["instances"]["end-user-api"]["secret_key"]
    auth = {"Authorization": f"Bearer {secret}"}
    base = f"{reached.base_url}/clerk/v1/users"
    ids = []
    for name in ("ann", "bob", "cid"):
        made = reached.http.post(
            base, headers=auth, json={"email_address": [f"{name}@example.com"], "first_name": name}
        )
        ids.append(made.json()["id"])

    def listed(**params):
        answer = reached.http.get(base, headers=auth, params=params)
        assert answer.status_code == 200, answer.text
        return [user["id"] for user in answer.json()]

    assert listed() == ids[::-1]  # newest first
    assert listed(order_by="+created_at") == ids
    assert listed(user_id=ids[1]) == [ids[1]]
    assert listed(user_id=[f"-{ids[1]}"]) == [ids[2], ids[0]]
    assert listed(query="CID") == [ids[2]]
    assert listed(email_address=["bob@example.com", "ann@example.com"]) == [ids[1], ids[0]]
    assert listed(order_by="first_name") == ids
    count = reached.http.get(f"{base}/count", headers=auth, params={"user_id": [ids[0], ids[2]]})
    assert count.json() == {"object": "total_count", "total_count": 2}
    refused = reached.http.get(base, headers=auth, params={"order_by": "password"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["code"] == "form_param_value_invalid"
    user = reached.http.get(f"{base}/{ids[0]}", headers=auth).json()
    assert user["email_addresses"][0]["linked_to"] == [] and user["banned"] is False and "created" not in user
