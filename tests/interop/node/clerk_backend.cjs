// @clerk/backend, unchanged, against Clerk's Backend API served at the root of its own port: only apiUrl is set.
// Prints {passed, total, failures} as JSON.
const { createClerkClient } = require("@clerk/backend");

const [secretKey, apiUrl] = process.argv.slice(2);
const clerk = createClerkClient({ secretKey, apiUrl });

const { check, run } = require("./checks.cjs")();
let user;

check("users.createUser", async () => {
  user = await clerk.users.createUser({
    emailAddress: ["sdk@example.com"],
    firstName: "Ada",
    publicMetadata: { plan: "free" },
  });
  if (!user.id.startsWith("user_") || user.primaryEmailAddress?.emailAddress !== "sdk@example.com") {
    throw new Error(JSON.stringify(user));
  }
});
check("users.getUser", async () => {
  const again = await clerk.users.getUser(user.id);
  if (again.emailAddresses[0].emailAddress !== "sdk@example.com" || again.publicMetadata.plan !== "free") {
    throw new Error(JSON.stringify(again));
  }
});
check("users.getUserList by email, with its count", async () => {
  await clerk.users.createUser({ emailAddress: ["other@example.com"] });
  const found = await clerk.users.getUserList({ emailAddress: ["sdk@example.com"] });
  if (found.totalCount !== 1 || found.data.length !== 1 || found.data[0].id !== user.id) {
    throw new Error(JSON.stringify(found));
  }
  const all = await clerk.users.getUserList({ limit: 10 });
  if (all.totalCount !== 2 || all.data.length !== 2) throw new Error(JSON.stringify(all));
});
check("users.getUserList by user id", async () => {
  const found = await clerk.users.getUserList({ userId: [user.id] });
  if (found.totalCount !== 1 || found.data[0].id !== user.id) throw new Error(JSON.stringify(found));
});
check("users.updateUserMetadata merges", async () => {
  const updated = await clerk.users.updateUserMetadata(user.id, { publicMetadata: { publishableKey: "pk_live_x" } });
  if (updated.publicMetadata.plan !== "free" || updated.publicMetadata.publishableKey !== "pk_live_x") {
    throw new Error(JSON.stringify(updated.publicMetadata));
  }
});
check("users.updateUser", async () => {
  const updated = await clerk.users.updateUser(user.id, { lastName: "Lovelace" });
  if (updated.lastName !== "Lovelace") throw new Error(JSON.stringify(updated));
});
check("an unknown user is a 404 ClerkAPIResponseError", async () => {
  try {
    await clerk.users.getUser("user_nothere");
  } catch (err) {
    if (err.status === 404 && err.errors?.[0]?.code === "resource_not_found") return;
    throw err;
  }
  throw new Error("found");
});
check("users.deleteUser", async () => {
  const deleted = await clerk.users.deleteUser(user.id);
  if (deleted.id !== user.id || deleted.deleted !== true) throw new Error(JSON.stringify(deleted));
});

run();
