// A chain: the first function gives a generator function; the second reads what it yields and,
// meanwhile, an event the first one listens for.
const app = [
  async function (this: any) {
    let x = 0;
    this.on("new-test-event", () => console.log("-event sent and received-"));
    return async function* () {
      while (++x < 4) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        yield { a: x };
      }
    };
  },
  async function (this: any, stream: any) {
    setTimeout(() => { this.emit("new-test-event", "between the functions of one sequence"); }, 400);
    for await (const { a } of stream) console.log({ x: a });
  },
];

export default app;
