// The conformance scripts' runner: each check in turn, a failure recorded and the next one run; prints
// {passed, total, failures} as JSON for the pytest side to assert on.
module.exports = function checks() {
  const list = [];
  return {
    check: (name, fn) => list.push([name, fn]),
    run: async () => {
      const failures = [];
      for (const [name, fn] of list) {
        try {
          await fn();
        } catch (err) {
          failures.push(`${name}: ${err && (err.message || err)}`);
        }
      }
      console.log(JSON.stringify({ passed: list.length - failures.length, total: list.length, failures }));
    },
  };
};
