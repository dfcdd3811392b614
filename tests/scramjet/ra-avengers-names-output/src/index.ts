import { PassThrough } from "stream";

// One avenger on a JSON-lines topic.
export = async function (_input: any) {
  const out: PassThrough & { topic?: string; contentType?: string } = new PassThrough({ objectMode: true });
  out.end({ name: "Hulk" });
  out.topic = "avengers";
  out.contentType = "application/x-ndjson";
  return out;
};
