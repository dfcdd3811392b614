const crypto = require("crypto");
const { Readable } = require("stream");

module.exports = function (_in, size = 300000) {
  const data = crypto.randomBytes(size);
  console.log(crypto.createHash("sha256").update(data).digest("hex"));
  const chunks = [];
  for (let i = 0; i < data.length; i += 4096) chunks.push(data.subarray(i, i + 4096));
  return Readable.from(chunks, { objectMode: false });
};
