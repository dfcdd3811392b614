// A second after its test-event, answers it; half a second later it is done.
export = async function (this: any) {
  await new Promise<void>((done) => {
    this.on("test-event", async () => {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      this.emit("test-event-response", "message from sequence");
      await new Promise((resolve) => setTimeout(resolve, 500));
      done();
    });
  });
};
