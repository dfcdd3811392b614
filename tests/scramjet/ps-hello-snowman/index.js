const { PassThrough } = require("stream");

// A temperature on its input: the snowman melts above zero.
module.exports = function (input) {
  const out = new PassThrough({ encoding: "utf-8" });
  input.on("data", (degrees) => {
    out.write(degrees > 0 ? "Snowman ⛄ is melting! 🥵\n" : "Snowman ⛄ is freezing 🥶\n");
  });
  return out;
};
