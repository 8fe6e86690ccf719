// stripe-node, unchanged (host, port and protocol only), through the billing a subscription SaaS depends on: every
// POST carries stripe-node's own Idempotency-Key, so expand must hold on that path too. Prints {passed, total,
// failures} as JSON.
const Stripe = require("stripe");

const [key, base] = process.argv.slice(2);
const url = new URL(base);
const stripe = new Stripe(key, { host: url.hostname, port: Number(url.port), protocol: "http", maxNetworkRetries: 0 });
const { check, run } = require("./checks.cjs")();

let customer, price;
check("a product with its default price (default_price_data) and plain fields kept", async () => {
  const product = await stripe.products.create({
    name: "Pro",
    unit_label: "seat",
    url: "https://example.com/pro",
    default_price_data: { currency: "usd", unit_amount: 1500, recurring: { interval: "month" } },
    expand: ["default_price"],
  });
  if (product.unit_label !== "seat" || product.url !== "https://example.com/pro") throw new Error(JSON.stringify(product));
  if (typeof product.default_price !== "object" || product.default_price.unit_amount !== 1500) {
    throw new Error(`default_price not expanded on a POST with an Idempotency-Key: ${JSON.stringify(product.default_price)}`);
  }
  price = product.default_price;
});
check("the Idempotency-Key is echoed", async () => {
  const made = await stripe.customers.create({ email: "echo@example.com" }, { idempotencyKey: "node-echo-1" });
  const raw = made.lastResponse;
  if (raw.idempotencyKey !== "node-echo-1") throw new Error(`echoed ${raw.idempotencyKey}`);
});
check("a trial: trialing, a $0 first invoice, trial_will_end", async () => {
  customer = await stripe.customers.create({ email: "trial@example.com", payment_method: "pm_card_visa",
    invoice_settings: { default_payment_method: "pm_card_visa" } });
  const sub = await stripe.subscriptions.create({
    customer: customer.id, items: [{ price: price.id }], trial_period_days: 2, expand: ["latest_invoice"],
  });
  if (sub.status !== "trialing" || !sub.trial_end || sub.latest_invoice.total !== 0) throw new Error(JSON.stringify(sub));
  const events = await stripe.events.list({ type: "customer.subscription.trial_will_end" });
  if (!events.data.some((e) => e.data.object.id === sub.id)) throw new Error("no trial_will_end");
});
check("payment_behavior=default_incomplete leaves it incomplete with an open invoice", async () => {
  const sub = await stripe.subscriptions.create({
    customer: customer.id, items: [{ price: price.id }], payment_behavior: "default_incomplete", expand: ["latest_invoice"],
  });
  if (sub.status !== "incomplete" || sub.latest_invoice.status !== "open") throw new Error(JSON.stringify(sub));
});
check("a declining card: attach refused with its decline_code", async () => {
  try {
    await stripe.paymentMethods.attach("pm_card_visa_chargeDeclinedInsufficientFunds", { customer: customer.id });
  } catch (err) {
    if (err.type === "StripeCardError" && err.decline_code === "insufficient_funds" && err.doc_url) return;
    throw err;
  }
  throw new Error("attached");
});
check("cancel_at_period_end sets cancel_at; status=all lists the canceled", async () => {
  const sub = await stripe.subscriptions.create({ customer: customer.id, items: [{ price: price.id }] });
  const marked = await stripe.subscriptions.update(sub.id, { cancel_at_period_end: true,
    cancellation_details: { comment: "too pricey" } });
  if (marked.cancel_at !== marked.items.data[0].current_period_end) throw new Error(JSON.stringify(marked));
  if (marked.cancellation_details.comment !== "too pricey") throw new Error(JSON.stringify(marked.cancellation_details));
  await stripe.subscriptions.cancel(sub.id);
  const open = await stripe.subscriptions.list({ customer: customer.id });
  const all = await stripe.subscriptions.list({ customer: customer.id, status: "all" });
  if (open.data.some((s) => s.id === sub.id) || !all.data.some((s) => s.id === sub.id)) throw new Error("listing");
});
check("an unknown event type is refused", async () => {
  try {
    await stripe.webhookEndpoints.create({ url: "https://example.com/h", enabled_events: ["customer.teleported"] });
  } catch (err) {
    if (err.type === "StripeInvalidRequestError" && err.param === "enabled_events[0]") return;
    throw err;
  }
  throw new Error("accepted");
});
run();
