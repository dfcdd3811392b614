const crypto = require("crypto");

module.exports = async function (input) {
  let text = "";
  for await (const chunk of input) text += chunk;
  this.logger.info("read", text.length, "characters");
  return crypto.createHash("md5").update(text).digest("hex");
};
