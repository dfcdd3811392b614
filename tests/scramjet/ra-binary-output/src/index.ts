import { createReadStream } from "fs";
import { PassThrough } from "stream";
import * as crypto from "crypto";

// Its file through a PassThrough in "binary" encoding: strings of one character per byte.
const app = [
  async function (this: any, _input: any, file: string = `${__dirname}/random.bin`) {
    const out = new PassThrough({ encoding: "binary" });
    const stream = createReadStream(file);
    const hash = crypto.createHash("sha256");
    stream.pipe(out);
    stream.on("data", (data) => hash.update(data));
    stream.on("end", () => console.log(hash.digest("hex")));
    return out;
  },
];

export = app;
