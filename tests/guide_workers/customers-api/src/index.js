// api-multi, written from the guide (phase 5 and the test curl): the developer's backend authenticates with its
// secret key (SHA-256 -> secretkey:{hash}:publishableKey -> publishablekey:{pk}:platformId -> tierConfig, all in
// its own namespace), creates customers in the shared end-user-api Clerk app with a D1 row, and meters calls.
import { Hono } from "hono";
import { createClerkClient } from "@clerk/backend";

const app = new Hono();

async function sha256(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

app.use("*", async (c, next) => {
  const secret = (c.req.header("Authorization") || "").replace(/^Bearer\s+/, "");
  const publishableKey = secret ? await c.env.KEYS.get(`secretkey:${await sha256(secret)}:publishableKey`) : null;
  const platformId = publishableKey ? await c.env.KEYS.get(`publishablekey:${publishableKey}:platformId`) : null;
  const tierConfig = platformId ? await c.env.KEYS.get(`platform:${platformId}:tierConfig`) : null;
  if (!tierConfig) return c.json({ error: "Invalid API key", message: "API key not found or expired" }, 401);
  c.set("caller", { publishableKey, platformId, tiers: JSON.parse(tierConfig).tiers });
  await next();
});

app.post("/api/data", async (c) => {
  const { platformId, tiers } = c.get("caller");
  const userId = c.req.header("X-User-Id");
  const plan = c.req.header("X-User-Plan") || "free";
  if (!userId) return c.json({ error: "X-User-Id is required" }, 400);
  const tier = tiers.find((t) => t.name === plan);
  if (!tier) return c.json({ error: `unknown plan ${plan}` }, 403);
  const key = `usage:${platformId}:${userId}`;
  const usage = JSON.parse((await c.env.END_USER_USAGE.get(key)) || '{"usageCount":0}');
  if (tier.limit !== null && usage.usageCount >= tier.limit) return c.json({ error: "usage exceeded" }, 403);
  usage.usageCount += 1;
  usage.plan = plan;
  usage.lastUpdated = Math.floor(Date.now() / 1000);
  await c.env.END_USER_USAGE.put(key, JSON.stringify(usage));
  return c.json({ ok: true, userId, plan, usage });
});

app.post("/customers", async (c) => {
  const { publishableKey, platformId } = c.get("caller");
  const { email, name, plan = "free" } = await c.req.json();
  if (!email) return c.json({ error: "email is required" }, 400);
  const clerk = createClerkClient({ secretKey: c.env.CLERK_SECRET_KEY });
  const user = await clerk.users.createUser({
    emailAddress: [email],
    firstName: name,
    publicMetadata: { publishableKey, plan },
  });
  await c.env.CUSTOMERS_DB.prepare(
    "INSERT INTO customers (id, platform_id, publishable_key, email, name, plan) VALUES (?, ?, ?, ?, ?, ?)",
  ).bind(user.id, platformId, publishableKey, email, name ?? null, plan).run();
  return c.json({ customer: { id: user.id, email, name, plan } }, 201);
});

app.get("/customers", async (c) => {
  const { results } = await c.env.CUSTOMERS_DB.prepare(
    "SELECT id, email, name, plan, created_at FROM customers WHERE platform_id = ? ORDER BY created_at",
  ).bind(c.get("caller").platformId).all();
  return c.json({ data: results });
});

export default app;
