import { PassThrough } from "stream";

// Its input, each chunk prefixed, on the text topic topic-test.
const app = [
  function (this: any, input: any) {
    const out = new PassThrough({ objectMode: true });
    input.map((chunk: string) => `producer got: ${chunk}`).pipe(out);
    return Object.assign(out, { topic: "topic-test", contentType: "text/plain" });
  },
];

export default app;
