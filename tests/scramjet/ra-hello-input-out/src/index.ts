import { PassThrough } from "stream";

// Reads the names topic; says each name on a line, through an object-mode PassThrough of its own.
const app = [
  { requires: "names", contentType: "application/x-ndjson" },
  function (this: any, input: any) {
    const out = new PassThrough({ objectMode: true });
    input.map((person: { name: string }) => "Name is: " + person.name + "\n").pipe(out);
    return out;
  },
];

export default app;
