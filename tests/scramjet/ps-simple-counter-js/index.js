const { DataStream } = require("scramjet");

// Counts from start to end on stdout as {x} objects, 50 ms apart; its own DataStream, run to its end.
module.exports = async function (_input, start = 0, end = 1000) {
  await DataStream.from(async function* () {
    let i = +start || 0;
    while (i++ < end) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      yield { x: i };
    }
  }).do(console.log).run();
};
