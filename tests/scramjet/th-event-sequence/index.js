// On its input event, a JSON message {test: n}: prints it and answers {test: n + 1} as its output event.
module.exports = async function (_input, inputEvent = "in", outputEvent = "out") {
  await new Promise((done) => {
    this.on(inputEvent, async (message) => {
      const event = JSON.parse(message);
      console.log("event", JSON.stringify(event));
      this.emit(outputEvent, JSON.stringify({ test: event.test + 1 }));
      await new Promise((resolve) => setTimeout(resolve, 100));
      done();
    });
  });
};
