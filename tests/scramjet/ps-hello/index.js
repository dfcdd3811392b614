const { Transform } = require("stream");

// Its input through a text Transform of its own, each chunk greeted.
module.exports = function (input) {
  return input.pipe(new Transform({
    encoding: "utf-8",
    transform(chunk, _encoding, callback) { callback(null, `Hello ${chunk}`); },
  }));
};
