"""The attack corpus, shared by the tests (tests/security) and the replay against a served emulator
(bench/attacks.py): requests that crossed a boundary or broke the emulator before it was hardened."""

from __future__ import annotations

# api-multi, with a valid secret key: (method, path, extra headers, body); each must answer 4xx in the guide's JSON.
GUIDE_CASES = [
    ("POST", "/api/data", {"X-User-Id": "a:b"}, None),
    ("POST", "/api/data", {"X-User-Id": "x" * 600}, None),
    ("POST", "/customers", {}, b"[" * 100_000 + b"]" * 100_000),
    ("POST", "/customers", {}, b'{"email": "a@b.c", "n": ' + b"9" * 5000 + b"}"),
    ("POST", "/customers", {}, b'{"email": "\\ud800@example.com"}'),
    (
        "POST",
        "/customers",
        {},
        b'{"email": "a@b.c", "name": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}',
    ),
    ("POST", "/checkout", {}, b"\xff\xfe"),
    ("POST", "/checkout", {}, b"42"),
]

# The Cloudflare REST subset, authenticated ({ns} and {db} filled in); each must answer 4xx in Cloudflare's envelope.
CLOUDFLARE_CASES = [
    ("GET", "/storage/kv/namespaces?page=abc", {}, None),
    ("GET", "/storage/kv/namespaces?per_page=-1", {}, None),
    ("GET", "/storage/kv/namespaces/{ns}/keys?limit=abc", {}, None),
    ("GET", "/storage/kv/namespaces/{ns}/keys?limit=5", {}, None),
    ("GET", "/storage/kv/namespaces/{ns}/keys?cursor=nonsense", {}, None),
    ("PUT", "/storage/kv/namespaces/{ns}/values/k?expiration=abc", {}, b"v"),
    ("PUT", "/storage/kv/namespaces/{ns}/values/k?expiration_ttl=99999999999999999999999", {}, b"v"),
    ("PUT", "/storage/kv/namespaces/{ns}/values/k?expiration=1e999", {}, b"v"),
    ("PUT", "/storage/kv/namespaces/{ns}/bulk", {}, b"not json"),
    ("PUT", "/storage/kv/namespaces/{ns}/bulk", {}, b'{"key": "k"}'),
    ("PUT", "/storage/kv/namespaces/{ns}/bulk", {}, b'[{"value": "no key"}]'),
    ("PUT", "/storage/kv/namespaces/{ns}/bulk", {}, b'[{"key": "k", "value": "!!", "base64": true}]'),
    ("PUT", "/storage/kv/namespaces/{ns}/bulk", {}, b'[{"key": "k", "value": "\\ud800"}]'),
    ("POST", "/storage/kv/namespaces/{ns}/bulk/delete", {}, b'{"keys": 1}'),
    ("POST", "/storage/kv/namespaces/{ns}/bulk/get", {}, b"[1, 2]"),
    (
        "PUT",
        "/storage/kv/namespaces/{ns}/values/k",
        {"Content-Type": "multipart/form-data; boundary=x"},
        b'--x\r\nContent-Disposition: form-data; name="value"\r\n\r\nv\r\n--x\r\nContent-Disposition: form-data; '
        b'name="metadata"\r\n\r\n{not json\r\n--x--\r\n',
    ),
    (
        "PUT",
        "/storage/kv/namespaces/{ns}/values/k",
        {"Content-Type": "multipart/form-data; boundary=x"},
        b"--x\r\ngarbage",
    ),
    ("POST", "/d1/database/{db}/query", {}, b"[]"),
    ("POST", "/d1/database/{db}/query", {}, b'{"sql": "SELECT ?", "params": [{"a": 1}]}'),
    ("POST", "/d1/database/{db}/query", {}, b'{"sql": "SELECT ?", "params": [99999999999999999999999]}'),
    ("POST", "/d1/database/{db}/query", {}, b'{"batch": [{"params": []}]}'),
    ("POST", "/d1/database/{db}/query", {}, b'{"sql": "PRAGMA writable_schema=ON"}'),
]

# D1 statements that reached the store's KV, corrupted it or crashed the process; each must be refused.
D1_ATTACKS = [
    "PRAGMA writable_schema=ON",
    "PRAGMA writable_schema=1",
    "PRAGMA journal_mode=DELETE",
    "PRAGMA temp_store_directory='/tmp'",
    "SELECT * FROM pragma_database_list",
    "UPDATE sqlite_master SET sql = 'x' WHERE name = 'customers_probe'",
    "INSERT INTO sqlite_master VALUES ('table', 'x', 'x', 2, 'CREATE TABLE x (a)')",
    "DELETE FROM sqlite_master",
    "SELECT load_extension('/tmp/nothing')",
    "SELECT fts3_tokenizer('simple')",
    "SELECT * FROM dbstat",
    "CREATE VIRTUAL TABLE s USING dbstat",
    "CREATE VIRTUAL TABLE f3 USING fts3(body)",
    "ATTACH DATABASE 'store.db' AS s",
    "BEGIN",
    "SAVEPOINT x",
    "SELECT * FROM _dream_kv",
    "SELECT * FROM _cf_KV",
    # Round two: D1's own limits, and a PRAGMA that acted while the write probe prepared it.
    "SELECT zeroblob(999999999)",
    "INSERT INTO customers_probe VALUES (zeroblob(20000000))",
    "PRAGMA hard_heap_limit=1",
    "SELECT 1" + ", 1" * 60_000,
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 3000000) SELECT n, printf('%.40c', 'x') FROM c",
]

# Found by the fuzz: a form body whose parameter names are all digits decoded to a list, not parameters.
STRIPE_FORM_CASES = [b"[", b"0=a", b"0=a&1=b", b"[0]=x"]

# The web console (dream console), signed in and with the session's CSRF token: (method, path, form fields or None);
# each must answer 4xx in the console's own page, never 500. {plt} and {pk} are a real platform and its live pair.
CONSOLE_CASES = [
    ("GET", "/platforms/%3Cscript%3Ealert(1)%3C%2Fscript%3E", None),
    ("GET", "/platforms/plt_nope", None),
    ("GET", "/platforms/" + "p" * 5000, None),
    ("GET", "/platforms?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", None),
    ("GET", "/platforms?q=nobody%40example.com", None),
    ("GET", "/platforms?q=a%3Ab", None),  # a developer id no key can hold: was a 500
    ("GET", "/platforms?cursor=" + "z" * 600, None),
    ("GET", "/platforms/{plt}/keys/pk_nope/rotate", None),
    ("GET", "/platforms/{plt}/keys/{pk}/explode", None),
    ("GET", "/platforms/{plt}/keys/%3Cb%3E/revoke", None),
    ("GET", "/kv?ns=nope", None),
    ("GET", "/kv?prefix=" + "a" * 600, None),
    ("GET", "/kv?prefix=%00", None),
    ("GET", "/kv?ns=api-tokens&cursor=garbage", None),
    ("GET", "/kv/value", None),
    ("GET", "/kv/value?ns=api-tokens&key=nope", None),
    ("GET", "/kv/value?ns=%3Cscript%3E&key=x", None),
    ("GET", "/webhooks?before=abc", None),
    ("GET", "/webhooks?vendor=evil", None),
    ("GET", "/webhooks?state=%3Cb%3E", None),
    ("GET", "/vendors/evil/objects/a/b", None),
    ("GET", "/vendors/stripe/objects/acct_x/customer?before=abc", None),
    ("GET", "/vendors/stripe/object/nope", None),
    ("GET", "/vendors/clerk/object/" + "u" * 300, None),
    ("GET", "/replication?class=" + "c" * 600, None),
    ("GET", "/nowhere", None),
    ("POST", "/webhooks/resend", {"event": "evt_nope"}),
    ("POST", "/webhooks/resend", {"event": "<script>alert(1)</script>"}),
    ("POST", "/webhooks/resend", {"event": "msg_" + "x" * 300}),
    ("POST", "/replication/repair", {"plan": "not-a-plan"}),
    ("POST", "/platforms/{plt}/keys/pk_nope/revoke", {}),
    ("POST", "/platforms/{plt}/keys/{pk}/rotate", {"grace": "99y"}),
    ("POST", "/platforms/{plt}/keys/{pk}/burn", {}),
]

# Every route of the console: without a session each answers 401; each POST without (or with a wrong) CSRF token 403.
CONSOLE_ROUTES = [
    ("GET", "/"),
    ("GET", "/platforms"),
    ("GET", "/platforms/{plt}"),
    ("GET", "/platforms/{plt}/keys/{pk}/rotate"),
    ("POST", "/platforms/{plt}/keys/{pk}/rotate"),
    ("POST", "/platforms/{plt}/keys/{pk}/revoke"),
    ("GET", "/replication"),
    ("POST", "/replication/verify"),
    ("GET", "/replication/repair"),
    ("POST", "/replication/repair"),
    ("GET", "/replication/progress-page"),
    ("GET", "/replication/progress"),
    ("GET", "/webhooks"),
    ("POST", "/webhooks/resend"),
    ("GET", "/vendors"),
    ("GET", "/vendors/stripe/objects/x/customer"),
    ("GET", "/vendors/stripe/object/x"),
    ("GET", "/kv"),
    ("GET", "/kv/value?ns=api-tokens&key=x"),
    ("GET", "/live"),
    ("POST", "/signout"),
]
