// `wrangler dev` for one worker, as dream runs it: wrangler's own startWorker API, with no DevTools inspector.
// The `wrangler dev` command always opens two (workerd's and its proxy's) on loopback ports, and any local process
// that finds them can pause `fetch(request, env)` and read every secret in `env`; `--inspector-port 0` only picks
// the port. dream asks for none unless the user asks for one (`dream dev --inspect`, which runs `wrangler dev`).
//
// --entry runs the worker behind dream's own entry module (dreamcli/stores/vendor_shim.py), which routes its
// fetches to the vendors' hosts to dream's emulated vendors.
//
// node dev_worker.cjs WRANGLER_PACKAGE_DIR CONFIG PORT [--persist-to DIR] [--env-file FILE] [--entry FILE]
"use strict";

const [wranglerPackage, config, port, ...rest] = process.argv.slice(2);
const option = (name) => {
  const at = rest.indexOf(name);
  return at >= 0 ? rest[at + 1] : undefined;
};
const { unstable_startWorker: startWorker } = require(wranglerPackage);

(async () => {
  const persist = option("--persist-to");
  const envFile = option("--env-file");
  const worker = await startWorker({
    config,
    entrypoint: option("--entry"),
    // Given, the env file replaces .dev.vars: the user's own keys for the real vendors are not loaded.
    envFiles: envFile ? [envFile] : undefined,
    dev: {
      inspector: false,
      server: { hostname: "127.0.0.1", port: Number(port) },
      persist: persist || undefined,
      watch: false,
      logLevel: "info",
    },
  });
  await worker.ready;
  console.log(`dream: ready on ${await worker.url}`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      await worker.dispose();
    } finally {
      process.exit(0);
    }
  };
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(signal, stop);
})().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
