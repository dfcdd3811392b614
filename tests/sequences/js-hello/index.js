const { Transform } = require("stream");

module.exports = function (input) {
  return input.pipe(new Transform({
    writableObjectMode: true,
    transform(chunk, _enc, done) {
      const text = `Hello ${String(chunk).trim()}!`;
      console.log(text);
      done(null, text);
    },
  }));
};
