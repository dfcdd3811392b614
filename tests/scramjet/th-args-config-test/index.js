const { PassThrough } = require("stream");

// Its appConfig as JSON, then each argument's type and JSON; lingers a little when told to exit.
module.exports = function (_input, ...args) {
  const out = new PassThrough();
  out.write(`config: ${JSON.stringify(this.config)}\n`);
  for (const arg of args) out.write(`${typeof arg}, ${JSON.stringify(arg)}\n`);
  out.end();
  if (this.config.exit) this.exitTimeout = 500;
  return out;
};
