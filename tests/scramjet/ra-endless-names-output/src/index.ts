import { PassThrough } from "stream";

const names = ["Alice", "Ada", "Grace", "Michał", "Patryk", "Zoë"];

// {name} objects on a JSON-lines topic, one every 100 ms, max + 1 of them.
export = async function (_input: any, max = 10) {
  const out: PassThrough & { topic?: string; contentType?: string } = new PassThrough({ objectMode: true });
  let count = 0;
  const timer = setInterval(() => {
    out.write({ name: names[count % names.length] });
    if (++count > max) {
      clearInterval(timer);
      out.end();
    }
  }, 100);
  out.topic = "names";
  out.contentType = "application/x-ndjson";
  return out;
};
