// The anchor of bench/api_bench.py: api-multi's two hot routes written as a Worker, run under `wrangler dev`
// over the same KV state dream wrote, so the bench compares dream's emulator with Cloudflare's own runtime in
// the same run. The same keys and the same logic as dreamcli/platform/runtime.py (authenticate, check_rate,
// record_usage), as a Worker has to do it: KV get/put, so concurrent calls can lose increments.

const RATE_LIMIT_PER_MINUTE = 60;

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function json(body, status = 200, headers = {}) {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

async function authenticate(request, env) {
  const auth = request.headers.get("authorization") || "";
  const secret = auth.startsWith("Bearer ") ? auth.slice(7) : "";
  if (!secret) return null;
  const pk = await env.TOKENS_KV.get(`secretkey:${await sha256Hex(secret)}:publishableKey`);
  if (pk === null) return null;
  const platformId = await env.TOKENS_KV.get(`publishablekey:${pk}:platformId`);
  if (platformId === null) return null;
  const config = await env.TOKENS_KV.get(`platform:${platformId}:tierConfig`, "json");
  if (config === null) return null;
  return { publishableKey: pk, platformId, config };
}

function monthPeriod(now) {
  const moment = new Date(now * 1000);
  const start = Date.UTC(moment.getUTCFullYear(), moment.getUTCMonth(), 1) / 1000;
  const end = Date.UTC(moment.getUTCFullYear(), moment.getUTCMonth() + 1, 1) / 1000;
  return [start, end];
}

async function apiData(request, env, caller) {
  const userId = request.headers.get("x-user-id");
  if (!userId) return json({ error: "X-User-Id header is required with a secret key" }, 400);
  const plan = request.headers.get("x-user-plan") || "free";
  const now = Math.floor(Date.now() / 1000);
  const minute = Math.floor(now / 60);
  const rateKey = `ratelimit:${caller.platformId}:${userId}:${minute}`;
  const count = parseInt((await env.USAGE_KV.get(rateKey)) || "0", 10);
  if (count >= RATE_LIMIT_PER_MINUTE) return json({ error: "rate limited" }, 429);
  await env.USAGE_KV.put(rateKey, String(count + 1), { expirationTtl: 120 });
  const tier = (caller.config.tiers || []).find((t) => t.name === plan);
  if (!tier) return json({ error: `unknown plan ${plan}` }, 403);
  const [start, end] = monthPeriod(now);
  const usageKey = `usage:${caller.platformId}:${userId}`;
  let record = (await env.USAGE_KV.get(usageKey, "json")) || {};
  if (record.periodStart !== start) record = { usageCount: 0, periodStart: start, periodEnd: end };
  if (tier.limit != null && record.usageCount >= tier.limit) return json({ error: "usage exceeded" }, 403);
  record = { ...record, usageCount: record.usageCount + 1, plan, lastUpdated: now, periodEnd: end };
  await env.USAGE_KV.put(usageKey, JSON.stringify(record));
  return json(
    { ok: true, userId, plan, usage: { ...record, limit: tier.limit } },
    200,
    { "X-RateLimit-Limit": String(RATE_LIMIT_PER_MINUTE), "X-RateLimit-Remaining": String(RATE_LIMIT_PER_MINUTE - count - 1) },
  );
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    const caller = await authenticate(request, env);
    if (caller === null) return json({ error: "Invalid API key" }, 401);
    if (request.method === "POST" && pathname === "/api/data") return apiData(request, env, caller);
    if (request.method === "GET" && pathname === "/api/whoami") {
      return json({ platformId: caller.platformId, publishableKey: caller.publishableKey, userId: null });
    }
    return json({ error: "not found" }, 404);
  },
};
