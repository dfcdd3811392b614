import { PassThrough } from "stream";

// Its first two arguments as one compact JSON object, in an output it never ends.
export default function (_input: any, first: string, second: string) {
  const out = new PassThrough();
  out.write(JSON.stringify({ first_arg: first, second_arg: second }));
  return out;
}
