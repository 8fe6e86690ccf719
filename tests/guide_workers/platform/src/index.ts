// front-auth-api, written from the guide (phases 1, 2 and 5): platform ids, the $15/month subscription and its
// webhook, the credentials page's data. The developer is whoever the Clerk session (dream-api app) says.
import { Hono, type Context } from "hono";
import { HTTPException } from "hono/http-exception";
import Stripe from "stripe";
import { createClerkClient, verifyToken } from "@clerk/backend";

interface KV {
  get(key: string): Promise<string | null>;
  put(key: string, value: string, options?: { expirationTtl?: number }): Promise<void>;
}

type Env = {
  TOKENS_KV: KV;
  DEV_USAGE: KV;
  CLERK_SECRET_KEY: string;
  STRIPE_SECRET_KEY: string;
  STRIPE_PRICE_ID: string;
  STRIPE_WEBHOOK_SECRET: string;
  FRONTEND_URL: string;
};

const app = new Hono<{ Bindings: Env }>();

async function developer(c: Context<{ Bindings: Env }>): Promise<string> {
  const token = (c.req.header("Authorization") ?? "").replace(/^Bearer\s+/, "");
  if (!token) throw new HTTPException(401, { message: "sign in first" });
  try {
    const claims = await verifyToken(token, { secretKey: c.env.CLERK_SECRET_KEY });
    return claims.sub;
  } catch {
    throw new HTTPException(401, { message: "invalid session" });
  }
}

// Phase 1
app.post("/generate-platform-id", async (c) => {
  const userId = await developer(c);
  const existing = await c.env.TOKENS_KV.get(`user:${userId}:platformId`);
  if (existing) return c.json({ platformId: existing });
  const platformId = `plt_${crypto.randomUUID().replaceAll("-", "")}`;
  await c.env.TOKENS_KV.put(`user:${userId}:platformId`, platformId);
  await c.env.TOKENS_KV.put(`platform:${platformId}:userId`, userId);
  return c.json({ platformId });
});

// Phase 2: "Dev clicks Subscribe -> Stripe checkout"
app.post("/billing/subscribe", async (c) => {
  const userId = await developer(c);
  const stripe = new Stripe(c.env.STRIPE_SECRET_KEY);
  const session = await stripe.checkout.sessions.create({
    mode: "subscription",
    line_items: [{ price: c.env.STRIPE_PRICE_ID, quantity: 1 }],
    success_url: `${c.env.FRONTEND_URL}/dashboard`,
    client_reference_id: userId,
  });
  return c.redirect(session.url!, 303);
});

// Phase 2: "front-auth-api/webhook/stripe updates Clerk: publicMetadata.plan = 'paid'"
app.post("/webhook/stripe", async (c) => {
  const stripe = new Stripe(c.env.STRIPE_SECRET_KEY);
  let event: Stripe.Event;
  try {
    event = await stripe.webhooks.constructEventAsync(
      await c.req.text(),
      c.req.header("stripe-signature") ?? "",
      c.env.STRIPE_WEBHOOK_SECRET,
      undefined,
      Stripe.createSubtleCryptoProvider(),
    );
  } catch {
    return c.json({ error: "invalid signature" }, 400);
  }
  if (event.type === "checkout.session.completed" && event.data.object.client_reference_id) {
    const clerk = createClerkClient({ secretKey: c.env.CLERK_SECRET_KEY });
    await clerk.users.updateUserMetadata(event.data.object.client_reference_id, { publicMetadata: { plan: "paid" } });
  }
  return c.json({ received: true });
});

// Phase 4, step 5: what /credentials shows
app.get("/get-credentials", async (c) => {
  const userId = await developer(c);
  const [platformId, publishableKey, products] = await Promise.all([
    c.env.TOKENS_KV.get(`user:${userId}:platformId`),
    c.env.TOKENS_KV.get(`user:${userId}:publishableKey`),
    c.env.TOKENS_KV.get(`user:${userId}:products`),
  ]);
  if (!publishableKey) return c.json({ error: "no credentials yet" }, 404);
  return c.json({ platformId, publishableKey, products: JSON.parse(products ?? "[]") });
});

export default app;
