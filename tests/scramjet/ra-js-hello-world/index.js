const { PassThrough } = require("stream");

// One greeting, in an output it never ends.
module.exports = async function () {
  const out = new PassThrough({ encoding: "utf-8" });
  out.write("Hello World!");
  return out;
};
