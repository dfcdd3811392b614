const readline = require("readline");

module.exports = async function () {
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) process.stdout.write(">>> " + line + "\n");
};
