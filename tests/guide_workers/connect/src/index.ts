// oauth-api, written from the guide (phases 3 and 4): Stripe Connect, then the tier config: products and prices on
// the developer's own account, the key pair, the writes to both token namespaces. As the guide has it, the
// developer is named by the userId the frontend passes.
import { Hono } from "hono";
import Stripe from "stripe";
import { createClerkClient } from "@clerk/backend";

interface KV {
  get(key: string): Promise<string | null>;
  put(key: string, value: string, options?: { expirationTtl?: number }): Promise<void>;
  delete(key: string): Promise<void>;
}

type Env = {
  DEVELOPER_TOKENS: KV; // front-auth-api's TOKENS_KV
  CUSTOMER_TOKENS_KV: KV; // api-multi's TOKENS_KV
  STRIPE_CLIENT_ID: string;
  STRIPE_CLIENT_SECRET: string;
  CLERK_SECRET_KEY: string;
  FRONTEND_URL: string;
};

type TierInput = { name: string; price: number; limit: number | "unlimited"; features?: string };

const app = new Hono<{ Bindings: Env }>();

const hex = (bytes: ArrayBuffer | Uint8Array) =>
  [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");

// Phase 3: "oauth-api/authorize?userId={userId}"
app.get("/authorize", async (c) => {
  const userId = c.req.query("userId");
  if (!userId) return c.json({ error: "userId is required" }, 400);
  const state = hex(crypto.getRandomValues(new Uint8Array(16)));
  await c.env.DEVELOPER_TOKENS.put(`oauth:state:${state}`, userId, { expirationTtl: 600 });
  const params = new URLSearchParams({ response_type: "code", client_id: c.env.STRIPE_CLIENT_ID, scope: "read_write", state });
  return c.redirect(`https://connect.stripe.com/oauth/authorize?${params}`);
});

// Phase 3: "Stripe redirects: oauth-api/callback?code={code}&state={state}"
app.get("/callback", async (c) => {
  const code = c.req.query("code");
  const state = c.req.query("state");
  const userId = state ? await c.env.DEVELOPER_TOKENS.get(`oauth:state:${state}`) : null;
  if (!code || !userId) return c.json({ error: "invalid state" }, 400);
  await c.env.DEVELOPER_TOKENS.delete(`oauth:state:${state}`);
  const platformId = await c.env.DEVELOPER_TOKENS.get(`user:${userId}:platformId`);
  if (!platformId) return c.json({ error: "no platform id" }, 409);
  const token = await new Stripe(c.env.STRIPE_CLIENT_SECRET).oauth.token({ grant_type: "authorization_code", code });
  const saved = JSON.stringify({ accessToken: token.access_token, stripeUserId: token.stripe_user_id });
  await c.env.DEVELOPER_TOKENS.put(`user:${userId}:stripeToken`, saved);
  await c.env.DEVELOPER_TOKENS.put(`platform:${platformId}:stripeToken`, saved);
  return c.redirect(`${c.env.FRONTEND_URL}/api-tier-config?stripe=connected`);
});

// Phase 4: "POST /create-products Body: {userId, tiers: [...]}" (this worker calls it /tiers)
app.post("/tiers", async (c) => {
  const { userId, tiers } = await c.req.json<{ userId?: string; tiers?: TierInput[] }>();
  if (!userId) return c.json({ error: "userId is required" }, 400);
  if (!tiers?.length) return c.json({ error: "tiers are required" }, 400);
  const platformId = await c.env.DEVELOPER_TOKENS.get(`user:${userId}:platformId`);
  const saved = platformId ? await c.env.DEVELOPER_TOKENS.get(`platform:${platformId}:stripeToken`) : null;
  if (!platformId || !saved) return c.json({ error: "connect Stripe first" }, 409);
  const stripe = new Stripe(JSON.parse(saved).accessToken); // on THEIR account
  const products = [];
  const config = [];
  for (const tier of tiers) {
    const limit = tier.limit === "unlimited" ? "unlimited" : String(tier.limit);
    const metadata = { platformId, tierName: tier.name, limit };
    const product = await stripe.products.create({ name: `${tier.name} Plan`, metadata });
    const price = await stripe.prices.create({
      product: product.id,
      unit_amount: Math.round(tier.price * 100),
      currency: "usd",
      recurring: { interval: "month" },
      metadata,
    });
    products.push({ tier: tier.name, priceId: price.id, productId: product.id });
    config.push({
      name: tier.name,
      limit: limit === "unlimited" ? null : Number(limit),
      price: tier.price,
      currency: "usd",
      priceId: price.id,
      productId: product.id,
      features: tier.features ?? "",
    });
  }
  const publishableKey = `pk_live_${hex(crypto.getRandomValues(new Uint8Array(16)))}`;
  const secretKey = `sk_live_${hex(crypto.getRandomValues(new Uint8Array(32)))}`;
  const hashHex = hex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(secretKey)));
  // e) front-auth-api TOKENS_KV
  await c.env.DEVELOPER_TOKENS.put(`user:${userId}:publishableKey`, publishableKey);
  await c.env.DEVELOPER_TOKENS.put(`user:${userId}:secretKey`, secretKey);
  await c.env.DEVELOPER_TOKENS.put(`user:${userId}:products`, JSON.stringify(products));
  await c.env.DEVELOPER_TOKENS.put(`publishablekey:${publishableKey}:platformId`, platformId);
  await c.env.DEVELOPER_TOKENS.put(`secretkey:${hashHex}:publishableKey`, publishableKey);
  // f) api-multi TOKENS_KV
  await c.env.CUSTOMER_TOKENS_KV.put(`platform:${platformId}:tierConfig`, JSON.stringify({ tiers: config }));
  await c.env.CUSTOMER_TOKENS_KV.put(`publishablekey:${publishableKey}:platformId`, platformId);
  await c.env.CUSTOMER_TOKENS_KV.put(`secretkey:${hashHex}:publishableKey`, publishableKey);
  // g) Clerk metadata (dream-api app)
  await createClerkClient({ secretKey: c.env.CLERK_SECRET_KEY }).users.updateUserMetadata(userId, {
    publicMetadata: { publishableKey },
  });
  return c.json({ platformId, publishableKey, secretKey, products }, 201);
});

export default app;
