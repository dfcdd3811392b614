import { PassThrough } from "stream";

// The text topic topic-test, each chunk prefixed, as its output.
const app = [
  { requires: "topic-test", contentType: "text/plain" },
  function (this: any, input: any) {
    const out = new PassThrough({ objectMode: true });
    input.map((chunk: string) => `consumer got: ${chunk}\n`).pipe(out);
    return out;
  },
];

export default app;
