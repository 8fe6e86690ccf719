// What the platform's workers do with the emulator's webhooks, with the official libraries, unchanged: svix's
// Webhook.verify and @clerk/backend's verifyWebhook for Clerk's (Svix) deliveries, stripe-node's
// webhooks.constructEvent for Stripe's. Reads {clerk: {secret, deliveries}, stripe: {secret, deliveries}} from the
// file named on the command line (each delivery {headers, body} exactly as received). Prints {passed, total, failures}.
const fs = require("fs");
const { Webhook } = require("svix");
const { verifyWebhook } = require("@clerk/backend/webhooks");
const Stripe = require("stripe");

const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const { check, run } = require("./checks.cjs")();
const stripe = new Stripe("sk_test_unused_for_verification");

input.clerk.deliveries.forEach((delivery, index) => {
  check(`svix verifies Clerk delivery ${index}`, () => {
    const event = new Webhook(input.clerk.secret).verify(delivery.body, delivery.headers);
    if (!event.type.startsWith("user.") || !event.data.id) throw new Error(JSON.stringify(event).slice(0, 200));
  });
  check(`@clerk/backend verifyWebhook takes Clerk delivery ${index}`, async () => {
    const request = new Request("http://localhost:8788/webhook/clerk", {
      method: "POST",
      headers: delivery.headers,
      body: delivery.body,
    });
    const event = await verifyWebhook(request, { signingSecret: input.clerk.secret });
    if (event.object !== "event" || !event.type.startsWith("user.")) throw new Error(JSON.stringify(event));
  });
});
check("svix refuses a tampered Clerk delivery", () => {
  const delivery = input.clerk.deliveries[0];
  try {
    new Webhook(input.clerk.secret).verify(delivery.body + " ", delivery.headers);
  } catch (err) {
    return;
  }
  throw new Error("accepted");
});
input.stripe.deliveries.forEach((delivery, index) => {
  check(`stripe-node constructEvent verifies Stripe delivery ${index}`, () => {
    const event = stripe.webhooks.constructEvent(delivery.body, delivery.headers["stripe-signature"], input.stripe.secret);
    if (event.object !== "event" || !event.type) throw new Error(JSON.stringify(event).slice(0, 200));
  });
});
check("stripe-node refuses another secret", () => {
  const delivery = input.stripe.deliveries[0];
  try {
    stripe.webhooks.constructEvent(delivery.body, delivery.headers["stripe-signature"], "whsec_other");
  } catch (err) {
    return;
  }
  throw new Error("accepted");
});

run();
