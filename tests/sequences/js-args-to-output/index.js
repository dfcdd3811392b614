const { PassThrough } = require("stream");

module.exports = function (_in, a1, a2, a3, a4) {
  const out = new PassThrough();
  out.write(a1 + "\n");
  out.write(a2.toString() + "\n");
  out.write(a3.abc + "\n");
  out.write(a4[0] + "\n");
  return out; // never ended, as in Scramjet's sample
};
