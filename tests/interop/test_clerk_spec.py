"""Clerk's Backend API as its description says, through clerk-backend-api and @clerk/backend with only their base URL
changed: every filter of `GET /v1/users`, the fields of `POST /v1/users` (username, phone numbers, a password stored
hashed and checked with verify_password), bans and locks, sessions (create, list, revoke; a ban revokes them), an
unknown body field refused, and what Clerk has but dream does not serve answered in Clerk's error shape."""

from __future__ import annotations

import httpx
import pytest

from tests.interop.test_vendor_sdks import served  # noqa: F401 - the fixture

pytestmark = pytest.mark.socket


@pytest.fixture
def clerk(served):  # noqa: F811 - the fixture imported above
    from clerk_backend_api import Clerk

    serving, urls = served
    secret = serving.emulator.config()["clerk"]["instances"]["end-user-api"]["secret_key"]
    with Clerk(bearer_auth=secret, server_url=f"{urls['clerk']}/v1") as client:
        yield client, serving, urls, secret


def test_users_are_made_and_found_by_every_documented_field(clerk):
    client, serving, _, _ = clerk
    ann = client.users.create(
        email_address=["ann@example.com"],
        username="ann_smith",
        phone_number=["+14155550100"],
        first_name="Ann",
        last_name="Smith",
        password="correct horse battery",
    )
    bob = client.users.create(email_address=["bob@example.org"], username="bobby", first_name="Bob")
    assert ann.username == "ann_smith" and ann.password_enabled is True
    assert ann.phone_numbers[0].phone_number == "+14155550100" and ann.primary_phone_number_id
    stored = serving.emulator.clerk.state.load(ann.id)
    assert "correct horse" not in str(stored) and stored["_password"].startswith("scrypt$")

    def ids(**filters):
        return [u.id for u in client.users.list(request=filters)]

    assert ids(username=["bobby"]) == [bob.id]
    assert ids(phone_number=["+14155550100"]) == [ann.id]
    assert ids(email_address_query="example.org") == [bob.id]
    assert ids(username_query="ann_") == [ann.id]
    assert ids(name_query="smith") == [ann.id]
    assert ids(phone_number_query="555") == [ann.id]
    assert ids(organization_id=["org_1"]) == []
    assert set(ids(created_at_after=ann.created_at - 1)) == {ann.id, bob.id}
    assert ids(created_at_before=ann.created_at - 1) == []
    client.users.ban(user_id=bob.id)
    assert ids(banned=True) == [bob.id] and ids(banned=False) == [ann.id]
    with pytest.raises(Exception, match="username is taken"):
        client.users.create(email_address=["other@example.com"], username="ANN_SMITH")


def test_passwords_are_checked_as_clerk_checks_them(clerk):
    from clerk_backend_api.models import ClerkErrors, SDKError

    client, _, _, _ = clerk
    with pytest.raises(ClerkErrors, match="8 characters or more"):
        client.users.create(email_address=["short@example.com"], password="short")
    user = client.users.create(email_address=["pw@example.com"], password="a long passphrase")
    assert client.users.verify_password(user_id=user.id, password="a long passphrase").verified is True
    with pytest.raises(SDKError, match="Status 422.*form_password_incorrect"):  # 422, as the description declares
        client.users.verify_password(user_id=user.id, password="a wrong passphrase")


def test_bans_locks_and_sessions(clerk):
    client, _, urls, secret = clerk
    user = client.users.create(email_address=["s@example.com"])
    session = client.sessions.create(request={"user_id": user.id})
    assert session.status == "active" and session.user_id == user.id
    assert [s.id for s in client.sessions.list(user_id=user.id)] == [session.id]
    revoked = client.sessions.revoke(session_id=session.id)
    assert revoked.status == "revoked"
    second = client.sessions.create(request={"user_id": user.id})
    assert client.users.lock(user_id=user.id).locked is True
    assert client.users.unlock(user_id=user.id).locked is False
    assert client.users.ban(user_id=user.id).banned is True
    assert client.sessions.get(session_id=second.id).status == "revoked"  # a ban ends every session
    assert [s.id for s in client.sessions.list(user_id=user.id, status="active")] == []
    assert client.users.unban(user_id=user.id).banned is False


def test_an_unknown_body_field_and_an_unserved_path_in_clerks_shape(clerk):
    _, _, urls, secret = clerk
    headers = {"Authorization": f"Bearer {secret}"}
    typo = httpx.post(f"{urls['clerk']}/v1/users", json={"emial_address": ["x@example.com"]}, headers=headers)
    assert typo.status_code == 422
    assert typo.json()["errors"][0]["code"] == "form_param_unknown"
    assert typo.json()["errors"][0]["long_message"] == "emial_address is not a valid parameter for this request."
    orgs = httpx.get(f"{urls['clerk']}/v1/organizations/org_123", headers=headers)
    assert orgs.status_code == 404 and "does not serve it" in orgs.json()["errors"][0]["long_message"]
    nowhere = httpx.get(f"{urls['clerk']}/v1/teleporters", headers=headers)
    assert nowhere.status_code == 404 and "is not a Clerk API path" in nowhere.json()["errors"][0]["long_message"]


@pytest.mark.peer("npm-peers")
def test_clerk_backend_node_through_users_and_sessions(served):  # noqa: F811 - the fixture
    from tests.interop.test_vendor_sdks import run_node

    serving, urls = served
    secret = serving.emulator.config()["clerk"]["instances"]["end-user-api"]["secret_key"]
    report = run_node("clerk_spec.cjs", secret, urls["clerk"])
    assert report["failures"] == [] and report["passed"] == report["total"] == 5, report
