// A consumer: greets every line of its input. Started with --input-topic, its input is that topic.
const { PassThrough } = require("stream");

module.exports = function (input) {
  const out = new PassThrough(); // a text stream: its output is the greetings as they are written
  (async () => {
    let rest = "";
    for await (const chunk of input) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop();
      for (const name of lines) if (name.trim()) out.write(`Hello, ${name.trim()}!\n`);
    }
    out.end();
  })().catch((err) => out.destroy(err));
  return out;
};
