// stripe-node, unchanged, against Stripe served at the root of its own port: only host, port and protocol
// are set, as for any Stripe-compatible server. Prints {passed, total, failures} as JSON.
const Stripe = require("stripe");

const [key, base, clientId] = process.argv.slice(2);
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

// What the guide's workers do with stripe-node: Connect OAuth, products and prices on the connected account,
// subscription checkouts carrying the platform's metadata, subscriptions changed and canceled, webhook endpoints
// and signed events, idempotent retries.
let account, accountPrice, subscription;
check("oauth.authorizeUrl + authorize + oauth.token", async () => {
  const authorize = stripe.oauth.authorizeUrl({
    client_id: clientId,
    response_type: "code",
    scope: "read_write",
    state: "st_node",
  });
  // stripe-node builds connect.stripe.com URLs; the emulator's authorize page is at the same path on its own host
  const local = `${base}${new URL(authorize).pathname}${new URL(authorize).search}`;
  const answer = await fetch(local, { redirect: "manual" });
  const code = new URL(answer.headers.get("location")).searchParams.get("code");
  const token = await stripe.oauth.token({ grant_type: "authorization_code", code });
  account = token.stripe_user_id;
  if (!account.startsWith("acct_") || !token.access_token) throw new Error(JSON.stringify(token));
});
check("products and prices on the connected account (stripeAccount)", async () => {
  const tier = await stripe.products.create({ name: "Pro", metadata: { tierName: "pro" } }, { stripeAccount: account });
  accountPrice = await stripe.prices.create(
    { product: tier.id, unit_amount: 2900, currency: "usd", recurring: { interval: "month" }, metadata: { tierName: "pro" } },
    { stripeAccount: account },
  );
  const listed = await stripe.prices.list({ product: tier.id }, { stripeAccount: account });
  if (listed.data.length !== 1 || listed.data[0].id !== accountPrice.id) throw new Error(JSON.stringify(listed));
  let seen = true;
  try {
    await stripe.prices.retrieve(accountPrice.id);
  } catch (err) {
    if (err.code !== "resource_missing") throw err;
    seen = false; // not the platform's own: tenants are apart
  }
  if (seen) throw new Error("the platform's account saw the connected account's price");
});
check("idempotencyKey: the same answer again", async () => {
  const options = { stripeAccount: account, idempotencyKey: "node-idem-1" };
  const first = await stripe.customers.create({ email: "idem@example.com" }, options);
  const again = await stripe.customers.create({ email: "idem@example.com" }, options);
  if (first.id !== again.id || again.lastResponse.headers["idempotent-replayed"] !== "true") throw new Error(again.id);
});
check("checkout with subscription_data metadata, paid through payment_pages", async () => {
  const metadata = { platformId: "plt_node", customerId: "user_node", tier: "pro" };
  const made = await stripe.checkout.sessions.create(
    {
      mode: "subscription",
      customer_email: "buyer@example.com",
      line_items: [{ price: accountPrice.id, quantity: 1 }],
      success_url: "http://localhost:5173/ok",
      metadata,
      subscription_data: { metadata },
    },
    { stripeAccount: account },
  );
  await stripe.rawRequest("POST", `/v1/payment_pages/${made.id}/confirm`, { payment_method: "pm_card_visa" }, {
    stripeAccount: account,
  });
  const done = await stripe.checkout.sessions.retrieve(
    made.id,
    { expand: ["subscription", "line_items", "customer"] },
    { stripeAccount: account },
  );
  subscription = done.subscription;
  if (done.status !== "complete" || done.payment_status !== "paid") throw new Error(done.status);
  if (subscription.metadata.tier !== "pro" || done.customer.email !== "buyer@example.com") throw new Error("expand");
  if (done.line_items.data[0].price.id !== accountPrice.id) throw new Error(JSON.stringify(done.line_items));
});
check("subscriptions.retrieve expand latest_invoice, period on items", async () => {
  const found = await stripe.subscriptions.retrieve(subscription.id, { expand: ["latest_invoice"] }, {
    stripeAccount: account,
  });
  const item = found.items.data[0];
  if (found.latest_invoice.status !== "paid" || !(item.current_period_end > item.current_period_start)) {
    throw new Error(JSON.stringify(found.latest_invoice));
  }
});
check("subscriptions.update: an item without id is added, with id is changed", async () => {
  const item = subscription.items.data[0];
  const updated = await stripe.subscriptions.update(
    subscription.id,
    { items: [{ id: item.id, price: accountPrice.id, quantity: 1 }, { price: accountPrice.id }] },
    { stripeAccount: account },
  );
  if (updated.items.data.length !== 2) throw new Error(`${updated.items.data.length} items`);
});
check("subscriptions.cancel", async () => {
  const canceled = await stripe.subscriptions.cancel(subscription.id, {}, { stripeAccount: account });
  if (canceled.status !== "canceled") throw new Error(canceled.status);
});
check("subscriptions.list and invoices.list by customer", async () => {
  const subs = await stripe.subscriptions.list({ customer: subscription.customer, status: "canceled" }, {
    stripeAccount: account,
  });
  const invoices = await stripe.invoices.list({ customer: subscription.customer }, { stripeAccount: account });
  if (subs.data.length !== 1 || invoices.data.length !== 1) throw new Error(`${subs.data.length} ${invoices.data.length}`);
});
check("a declining card: subscription incomplete, invoice.pay a StripeCardError", async () => {
  const buyer = await stripe.customers.create({ email: "declined@example.com" });
  const card = await stripe.paymentMethods.attach("pm_card_chargeCustomerFail", { customer: buyer.id });
  const sub = await stripe.subscriptions.create({
    customer: buyer.id,
    items: [{ price: price.id }],
    default_payment_method: card.id,
  });
  if (sub.status !== "incomplete") throw new Error(sub.status);
  try {
    await stripe.invoices.pay(sub.latest_invoice, { payment_method: card.id });
  } catch (err) {
    if (err.type === "StripeCardError" && err.code === "card_declined") return;
    throw err;
  }
  throw new Error("paid");
});
check("webhookEndpoints create, retrieve, update, list, del", async () => {
  const made = await stripe.webhookEndpoints.create({ url: "http://127.0.0.1:9/hook", enabled_events: ["*"] });
  if (!made.secret.startsWith("whsec_")) throw new Error("no secret on creation");
  const got = await stripe.webhookEndpoints.retrieve(made.id);
  if (got.secret !== undefined) throw new Error("the secret shown again");
  const off = await stripe.webhookEndpoints.update(made.id, { disabled: true });
  const listed = await stripe.webhookEndpoints.list();
  const gone = await stripe.webhookEndpoints.del(made.id);
  if (off.status !== "disabled" || !listed.data.some((e) => e.id === made.id) || !gone.deleted) throw new Error("x");
});
check("events.list and events.retrieve, Connect events carry the account", async () => {
  const events = await stripe.events.list({ limit: 5, type: "customer.subscription.deleted" }, { stripeAccount: account });
  const one = await stripe.events.retrieve(events.data[0].id, {}, { stripeAccount: account });
  if (one.account !== account || one.data.object.status !== "canceled") throw new Error(JSON.stringify(one).slice(0, 200));
});
check("webhooks.constructEvent takes a payload signed as the emulator signs", async () => {
  const payload = JSON.stringify({ id: "evt_node", object: "event", type: "customer.created" });
  const secret = "whsec_node";
  const header = stripe.webhooks.generateTestHeaderString({ payload, secret });
  const event = stripe.webhooks.constructEvent(payload, header, secret);
  if (event.id !== "evt_node") throw new Error(event.id);
});
check("an unknown parameter is a StripeInvalidRequestError naming it", async () => {
  try {
    await stripe.products.create({ name: "X", colour: "red" });
  } catch (err) {
    if (err.type === "StripeInvalidRequestError" && err.param === "colour" && err.code === "parameter_unknown") return;
    throw err;
  }
  throw new Error("accepted");
});
check("an older apiVersion is honoured, a made-up one refused", async () => {
  const older = new Stripe(key, { host: url.hostname, port: Number(url.port), protocol: "http", apiVersion: "2024-06-20" });
  await older.customers.retrieve(customer.id);
  const madeUp = new Stripe(key, { host: url.hostname, port: Number(url.port), protocol: "http", apiVersion: "2099-01-01" });
  try {
    await madeUp.customers.retrieve(customer.id);
  } catch (err) {
    if (err.statusCode === 400) return;
    throw err;
  }
  throw new Error("accepted");
});
check("products.update, products.del refused while priced", async () => {
  const renamed = await stripe.products.update(product.id, { name: "Pro+" });
  if (renamed.name !== "Pro+") throw new Error(renamed.name);
  try {
    await stripe.products.del(product.id);
  } catch (err) {
    if (err.statusCode === 400) return;
    throw err;
  }
  throw new Error("deleted a priced product");
});

run();
