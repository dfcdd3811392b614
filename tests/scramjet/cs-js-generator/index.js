const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A result every 100 ms, for ever.
module.exports = async function* () {
  for (;;) {
    yield "Your result";
    await sleep(100);
  }
};
