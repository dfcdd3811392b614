import { StringStream } from "scramjet";

// count times "0," on its output (a StringStream of its own it never ends), stdout and stderr.
module.exports = async function (this: any, _input: any, count: any) {
  const stream = new StringStream();
  this.logger.info("called with " + count);
  for (let i = 0; i < +count; i++) {
    const digit = Math.floor(Math.random());
    process.stdout.write(digit + ",");
    process.stderr.write(digit + ",");
    stream.write(digit + ",");
  }
  return stream;
};
