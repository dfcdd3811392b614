import { createReadStream } from "fs";
import * as crypto from "crypto";

// Its own file, byte for byte, as output; the file's sha256 on stdout.
const app = [
  async function (this: any, _input: any, file: string = `${__dirname}/random.bin`) {
    const stream = createReadStream(file);
    const hash = crypto.createHash("sha256");
    stream.on("data", (data) => hash.update(data));
    stream.on("end", () => console.log(hash.digest("hex")));
    return stream;
  },
];

export default app;
