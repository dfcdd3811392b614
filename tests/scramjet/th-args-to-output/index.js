const { PassThrough } = require("stream");

// Writes each argument on a line of its own, keeping its type's own text; never ends its output.
module.exports = function (_input, text, number, object, list) {
  const out = new PassThrough();
  out.write(`${text}\n`);
  out.write(`${number.toString()}\n`);
  out.write(`${object.abc}\n`);
  out.write(`${list[0]}\n`);
  return out;
};
