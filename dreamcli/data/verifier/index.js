// dream's verifier Worker: reads the namespaces `dream kv verify --via-worker` checks through their bindings, inside
// Cloudflare, and streams them back as NDJSON, one shard at a time; `dream kv repair --via-worker` writes through the
// same bindings. Deployed by dream under a unique name for one run, and deleted after it.
//
// Every request carries the run's one-time secret (Authorization: Bearer), set as the Worker secret
// DREAM_VERIFY_TOKEN and compared in constant time; without that secret the Worker answers nothing.
//
// Vars, written by dream from its key schema (dreamcli/layout.py), never taken from a request:
//   DREAM_NAMESPACES  {"platform-tokens": "BINDING", ...}: the only bindings a request may name
//   DREAM_SEALED      [[prefix, suffix, "digest" | "fields"], ...]: the keys whose values never leave in clear
//   DREAM_CLEAR       ["stripeUserId", ...]: the fields of a sealed JSON object that are not secret
//
// POST /scan {namespace, prefix, skip, cursor, budget}
//   -> ["key","value"] lines in key order, then {"end": true, "cursor": next or null, "ops": n, "listed": n}.
//   A shard is the keys under `prefix` (skipping those under any of `skip`); one invocation makes at most `budget`
//   KV operations (a list of 1,000 keys or a bulk get of 100 values is one), well under Workers' 1,000, and says
//   where the next one starts. A stream without its end line is incomplete: dream asks again from the same cursor.
// POST /write {namespace, puts: [{key, value, base64, expiration, expiration_ttl, metadata}], copies: [{key, from, seal}], deletes: [key]}
//   -> {"written": n, "copied": n, "deleted": n, "refused": [{key, why}]}. A copy puts `from`'s value into `key` only
//   if it still seals to `seal` (what verify saw), so a secret is copied without ever leaving the Worker.

const SEAL = "sealed:sha256:";
const LIST_LIMIT = 1000;
const BULK_GET = 100;
const MAX_OPS = 950;
const MAX_WRITES = 900;

export default {
  async fetch(request, env) {
    try {
      await authorize(request, env);
      const url = new URL(request.url);
      const route = `${request.method} ${url.pathname}`;
      if (route === "GET /") return json({ verifier: "dream", version: 1, namespaces: Object.keys(namespaces(env)) });
      if (route === "POST /scan") return await scan(await body(request), env);
      if (route === "POST /write") return json(await write(await body(request), env));
      throw new Refusal(404, `no route ${route}`);
    } catch (err) {
      if (err instanceof Refusal) return json({ error: err.message }, err.status);
      return json({ error: `internal: ${String((err && err.message) || err)}` }, 500);
    }
  },
};

class Refusal extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function json(value, status = 200) {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
}

async function sha256(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return new Uint8Array(digest);
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function authorize(request, env) {
  const expected = env.DREAM_VERIFY_TOKEN;
  if (typeof expected !== "string" || expected.length < 32) throw new Refusal(503, "this verifier has no secret set");
  const header = request.headers.get("authorization") || "";
  const given = header.startsWith("Bearer ") ? header.slice(7) : "";
  // Digests of equal length, compared in constant time: neither the secret's length nor its bytes leak by timing.
  const [a, b] = await Promise.all([sha256(given), sha256(expected)]);
  if (!crypto.subtle.timingSafeEqual(a, b)) throw new Refusal(401, "unauthorized");
}

async function body(request) {
  try {
    const parsed = await request.json();
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) return parsed;
  } catch {}
  throw new Refusal(400, "the body must be a JSON object");
}

function namespaces(env) {
  return JSON.parse(env.DREAM_NAMESPACES || "{}");
}

function binding(env, name) {
  const bindings = namespaces(env);
  if (typeof name !== "string" || !Object.hasOwn(bindings, name)) {
    throw new Refusal(400, `unknown namespace (known: ${Object.keys(bindings).join(", ")})`);
  }
  return env[bindings[name]];
}

function texts(value, what) {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw new Refusal(400, `${what} must be a list of strings`);
  return value;
}

// The sealing rule of a key: "digest", "fields" or null (sent as it is).
function sealing(env) {
  const rules = JSON.parse(env.DREAM_SEALED || "[]");
  return (key) => {
    for (const [prefix, suffix, mode] of rules) {
      if (key.length >= prefix.length + suffix.length && key.startsWith(prefix) && key.endsWith(suffix)) return mode;
    }
    return null;
  };
}

// JSON with object keys sorted at every depth: equal values (as Python compares them) give equal text.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

// What leaves the Worker of a secret value: its SHA-256 (of the whole text), or for a JSON object each field sealed
// on its own (the clear ones kept), so its shape and its equality with another are still there to check: a string
// becomes the seal of its text, null stays null, anything else {"sealed": the seal of its canonical JSON} (never a
// string, as it was not one).
async function seal(value, mode, clear) {
  if (mode === "fields") {
    let parsed;
    try {
      parsed = JSON.parse(value);
    } catch {}
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
      const out = {};
      for (const [field, v] of Object.entries(parsed)) {
        if (v === null) out[field] = null;
        else if (typeof v === "string") out[field] = clear.has(field) ? v : SEAL + hex(await sha256(v));
        else out[field] = { sealed: SEAL + hex(await sha256(canonical(v))) };
      }
      return JSON.stringify(out);
    }
  }
  return SEAL + hex(await sha256(value));
}

async function scan(request, env) {
  const ns = binding(env, request.namespace);
  const prefix = typeof request.prefix === "string" ? request.prefix : "";
  // Skipped prefixes by length: a key is skipped when its first n characters are one of them (a few lookups a key,
  // however many prefixes: the scan of the rest skips every shard's).
  const skip = new Map();
  for (const s of texts(request.skip, "skip")) {
    if (!skip.has(s.length)) skip.set(s.length, new Set());
    skip.get(s.length).add(s);
  }
  const skipped = (name) => {
    for (const [length, prefixes] of skip) if (prefixes.has(name.slice(0, length))) return true;
    return false;
  };
  let cursor = typeof request.cursor === "string" && request.cursor ? request.cursor : undefined;
  // At least one page and its reads, so every invocation moves on.
  const budget = Math.min(MAX_OPS, Math.max(1 + LIST_LIMIT / BULK_GET, Number.isInteger(request.budget) ? request.budget : MAX_OPS));
  const ruleOf = sealing(env);
  const clear = new Set(JSON.parse(env.DREAM_CLEAR || "[]"));
  const encoder = new TextEncoder();
  const { readable, writable } = new TransformStream();
  const writer = writable.getWriter();
  const run = async () => {
    let ops = 0;
    let listed = 0;
    try {
      // A page is listed while the one before it is read, if there is room for it and its bulk gets.
      let pending = ns.list({ prefix, cursor, limit: LIST_LIMIT });
      ops += 1;
      while (pending) {
        const page = await pending;
        pending = null;
        listed += page.keys.length;
        const names = page.keys.map((k) => k.name).filter((name) => !skipped(name));
        const chunks = [];
        for (let i = 0; i < names.length; i += BULK_GET) chunks.push(names.slice(i, i + BULK_GET));
        cursor = page.list_complete ? undefined : page.cursor;
        if (cursor && ops + chunks.length + 1 + LIST_LIMIT / BULK_GET <= budget) {
          pending = ns.list({ prefix, cursor, limit: LIST_LIMIT });
          ops += 1;
        }
        // A page's bulk gets at once: they wait on storage, not on each other.
        const read = await Promise.all(chunks.map((chunk) => ns.get(chunk, "text")));
        ops += chunks.length;
        const lines = [];
        for (const [c, chunk] of chunks.entries()) {
          for (const name of chunk) {
            let value = read[c].get(name);
            if (value === null || value === undefined) continue; // deleted since the list
            const mode = ruleOf(name);
            if (mode) value = await seal(value, mode, clear);
            lines.push(JSON.stringify([name, value]) + "\n");
          }
        }
        if (lines.length) await writer.write(encoder.encode(lines.join("")));
      }
      await writer.write(encoder.encode(JSON.stringify({ end: true, cursor: cursor || null, ops, listed }) + "\n"));
      await writer.close();
    } catch (err) {
      // No end line: the caller sees an incomplete shard and asks again from its cursor.
      await writer.abort(err);
    }
  };
  run();
  return new Response(readable, { headers: { "content-type": "application/x-ndjson" } });
}

async function write(request, env) {
  const ns = binding(env, request.namespace);
  const puts = Array.isArray(request.puts) ? request.puts : [];
  const copies = Array.isArray(request.copies) ? request.copies : [];
  const deletes = texts(request.deletes, "deletes");
  if (puts.length + 2 * copies.length + deletes.length > MAX_WRITES) {
    throw new Refusal(413, `at most ${MAX_WRITES} operations a request (a copy is two)`);
  }
  const ruleOf = sealing(env);
  const clear = new Set(JSON.parse(env.DREAM_CLEAR || "[]"));
  const refused = [];
  let written = 0;
  let copied = 0;
  for (const put of puts) {
    if (!put || typeof put.key !== "string" || typeof put.value !== "string") throw new Refusal(400, "a put is {key, value}");
    const options = {};
    if (Number.isInteger(put.expiration_ttl)) options.expirationTtl = put.expiration_ttl;
    else if (Number.isInteger(put.expiration)) options.expiration = put.expiration;
    if (put.metadata !== undefined && put.metadata !== null) options.metadata = put.metadata;
    if (ruleOf(put.key) && put.value.includes(SEAL)) {
      refused.push({ key: put.key, why: "a sealed value is never written: copy it from its source" });
      continue;
    }
    try {
      const value = put.base64 === true ? Uint8Array.from(atob(put.value), (c) => c.charCodeAt(0)) : put.value;
      await ns.put(put.key, value, options);
      written += 1;
    } catch (err) {
      refused.push({ key: put.key, why: String((err && err.message) || err) }); // KV's own refusal (size, expiration)
    }
  }
  for (const copy of copies) {
    if (!copy || typeof copy.key !== "string" || typeof copy.from !== "string" || typeof copy.seal !== "string") {
      throw new Refusal(400, "a copy is {key, from, seal}");
    }
    const value = await ns.get(copy.from, "text");
    if (value === null) {
      refused.push({ key: copy.key, why: `${copy.from} no longer exists` });
      continue;
    }
    const mode = ruleOf(copy.from);
    const now = mode ? await seal(value, mode, clear) : value;
    if (now !== copy.seal) {
      refused.push({ key: copy.key, why: `${copy.from} changed since verify read it` });
      continue;
    }
    try {
      await ns.put(copy.key, value);
      copied += 1;
    } catch (err) {
      refused.push({ key: copy.key, why: String((err && err.message) || err) });
    }
  }
  let deleted = 0;
  for (const key of deletes) {
    try {
      await ns.delete(key);
      deleted += 1;
    } catch (err) {
      refused.push({ key, why: String((err && err.message) || err) });
    }
  }
  return { written, copied, deleted, refused };
}
