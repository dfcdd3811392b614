import { DataStream } from "scramjet";

// Greets each chunk of its input, with its own copy of scramjet.
export default function (this: any, input: any) {
  this.logger.info("greeting");
  return DataStream.from(input).map((chunk: string) => `Hello ${chunk}!`).do(console.log);
}
