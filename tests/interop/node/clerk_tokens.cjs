// @clerk/backend's token checks, unchanged, against the emulated Clerk: verifyToken (keys from {apiUrl}/v1/jwks)
// and authenticateRequest (which parses the instance's publishable key). Prints {passed, total, failures} as JSON.
const { createClerkClient, verifyToken } = require("@clerk/backend");

const [secretKey, publishableKey, apiUrl, token, userId, azp] = process.argv.slice(2);
const { check, run } = require("./checks.cjs")();

check("verifyToken with the secret key", async () => {
  const claims = await verifyToken(token, { secretKey, apiUrl, authorizedParties: [azp] });
  if (claims.sub !== userId || !claims.sid) throw new Error(JSON.stringify(claims));
});
check("verifyToken refuses another authorized party", async () => {
  try {
    await verifyToken(token, { secretKey, apiUrl, authorizedParties: ["https://elsewhere.example"] });
  } catch (err) {
    return;
  }
  throw new Error("accepted");
});
check("authenticateRequest signs the request in", async () => {
  const clerk = createClerkClient({ secretKey, publishableKey, apiUrl });
  const request = new Request("http://localhost:8787/api/data", { headers: { authorization: `Bearer ${token}` } });
  const state = await clerk.authenticateRequest(request, { authorizedParties: [azp] });
  if (!state.isSignedIn || state.toAuth().userId !== userId) throw new Error(`${state.status} ${state.reason}`);
});
check("authenticateRequest signs a tampered token out", async () => {
  const clerk = createClerkClient({ secretKey, publishableKey, apiUrl });
  const [h, p, sig] = token.split(".");
  const bad = `${h}.${p}.${sig.slice(0, -4)}AAAA`;
  const request = new Request("http://localhost:8787/api/data", { headers: { authorization: `Bearer ${bad}` } });
  const state = await clerk.authenticateRequest(request, { authorizedParties: [azp] });
  if (state.isSignedIn) throw new Error("signed in");
});

run();
