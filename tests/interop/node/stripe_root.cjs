// stripe-node, unchanged, against Stripe served at the root of its own port: only host, port and protocol
// are set, as for any Stripe-compatible server. Prints {passed, total, failures} as JSON.
const Stripe = require("stripe");

const [key, base] = process.argv.slice(2);
const url = new URL(base);
const stripe = new Stripe(key, { host: url.hostname, port: Number(url.port), protocol: "http", maxNetworkRetries: 0 });

const { check, run } = require("./checks.cjs")();

let customer, product, price, session;
check("customers.create", async () => {
  customer = await stripe.customers.create({ email: "node@example.com" });
  if (!customer.id.startsWith("cus_")) throw new Error(customer.id);
});
check("customers.retrieve", async () => {
  const again = await stripe.customers.retrieve(customer.id);
  if (again.email !== "node@example.com") throw new Error(JSON.stringify(again));
});
check("products.create", async () => {
  product = await stripe.products.create({ name: "Pro", metadata: { limit: "10000" } });
});
check("prices.create", async () => {
  price = await stripe.prices.create({
    product: product.id,
    unit_amount: 2900,
    currency: "usd",
    recurring: { interval: "month" },
  });
  if (price.product !== product.id) throw new Error(JSON.stringify(price));
});
check("checkout.sessions.create", async () => {
  session = await stripe.checkout.sessions.create({
    mode: "subscription",
    customer: customer.id,
    line_items: [{ price: price.id, quantity: 1 }],
    success_url: "http://localhost:5173/ok",
  });
  if (!session.url) throw new Error(JSON.stringify(session));
});
check("checkout.sessions.retrieve", async () => {
  const again = await stripe.checkout.sessions.retrieve(session.id);
  if (again.id !== session.id) throw new Error(JSON.stringify(again));
});
check("customers.list autoPagingEach", async () => {
  for (let i = 0; i < 4; i++) await stripe.customers.create({ email: `page${i}@example.com` });
  const seen = [];
  await stripe.customers.list({ limit: 2 }).autoPagingEach((c) => {
    seen.push(c.id);
  });
  if (new Set(seen).size !== 5 || seen.length !== 5) throw new Error(`saw ${seen.length}: ${seen}`);
});
check("a wrong key is an authentication error", async () => {
  const wrong = new Stripe("sk_test_wrong", { host: url.hostname, port: Number(url.port), protocol: "http" });
  try {
    await wrong.customers.retrieve(customer.id);
  } catch (err) {
    if (err.type === "StripeAuthenticationError" && err.requestId) return;
    throw err;
  }
  throw new Error("accepted");
});
check("an unknown id is a resource_missing error", async () => {
  try {
    await stripe.customers.retrieve("cus_nothere");
  } catch (err) {
    if (err.code === "resource_missing" && err.statusCode === 404) return;
    throw err;
  }
  throw new Error("found");
});

run();
