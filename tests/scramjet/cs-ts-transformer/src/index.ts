async function lookUp(data: string) {
  return "Your result: " + data;
}

// Each chunk of its input, looked up: a generator (so JSON lines).
const app = async function* (input: AsyncIterable<string>) {
  for await (const chunk of input) yield await lookUp(chunk);
};

export default app;
