const readline = require("readline");

// Prefixes every line of stdin with ">>> " on stdout (no newline); then waits, unless told not to.
module.exports = async function (_input, nowait) {
  for await (const line of readline.createInterface({ input: process.stdin })) {
    process.stdout.write(">>> ");
    process.stdout.write(line);
  }
  this.exitTimeout = 0;
  if (!nowait) await new Promise((resolve) => setTimeout(resolve, 5000));
};
