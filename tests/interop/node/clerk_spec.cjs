// @clerk/backend, unchanged (apiUrl only), through what Clerk's Backend API description gives users and sessions.
// Prints {passed, total, failures} as JSON.
const { createClerkClient } = require("@clerk/backend");

const [secretKey, apiUrl] = process.argv.slice(2);
const clerk = createClerkClient({ secretKey, apiUrl });
const { check, run } = require("./checks.cjs")();

let ann;
check("createUser with username, phone number and password", async () => {
  ann = await clerk.users.createUser({
    emailAddress: ["node-ann@example.com"], username: "node_ann", phoneNumber: ["+14155550111"],
    password: "a long passphrase", firstName: "Ann",
  });
  if (ann.username !== "node_ann" || !ann.passwordEnabled || ann.phoneNumbers[0].phoneNumber !== "+14155550111") {
    throw new Error(JSON.stringify(ann));
  }
});
check("getUserList by username, phone number and partial queries", async () => {
  const by = async (params) => (await clerk.users.getUserList(params)).data.map((u) => u.id);
  for (const params of [{ username: ["node_ann"] }, { phoneNumber: ["+14155550111"] }, { emailAddressQuery: "node-ann" },
    { nameQuery: "ann" }]) {
    const ids = await by(params);
    if (ids.length !== 1 || ids[0] !== ann.id) throw new Error(`${JSON.stringify(params)}: ${ids}`);
  }
});
check("verifyPassword", async () => {
  const ok = await clerk.users.verifyPassword({ userId: ann.id, password: "a long passphrase" });
  if (!ok.verified) throw new Error(JSON.stringify(ok));
});
check("banUser and unbanUser, lockUser and unlockUser", async () => {
  if (!(await clerk.users.banUser(ann.id)).banned) throw new Error("not banned");
  if ((await clerk.users.unbanUser(ann.id)).banned) throw new Error("still banned");
  if (!(await clerk.users.lockUser(ann.id)).locked) throw new Error("not locked");
  if ((await clerk.users.unlockUser(ann.id)).locked) throw new Error("still locked");
});
check("sessions: create, list, revoke", async () => {
  const session = await clerk.sessions.createSession({ userId: ann.id });
  const listed = await clerk.sessions.getSessionList({ userId: ann.id });
  if (!listed.data.some((s) => s.id === session.id)) throw new Error(JSON.stringify(listed));
  const revoked = await clerk.sessions.revokeSession(session.id);
  if (revoked.status !== "revoked") throw new Error(JSON.stringify(revoked));
});
run();
