import { StringDecoder } from "string_decoder";
const crypto = require("crypto");

// The md5 of all its input, as its output (a string: written as it is).
export = async function (this: any, input: any) {
  const decoder = new StringDecoder("utf-8");
  let text = "";
  for await (const chunk of input) text += decoder.write(chunk);
  text += decoder.end();
  return crypto.createHash("md5").update(text).digest("hex");
};
