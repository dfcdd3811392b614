import { PassThrough } from "stream";

// A count on its output every 100 ms, another on stdout every 200 ms; never ends.
export = async function (this: any) {
  const out = new PassThrough();
  let slow = 0;
  let fast = 0;
  setInterval(() => { console.log(slow++); }, 200);
  setInterval(() => { out.write(fast++ + "\n"); }, 100);
  return out;
};
