import { StringStream } from "scramjet";

// Answers each chunk of stdin, on its output (its own StringStream) and on stdout.
export default function (this: any) {
  return StringStream.from(process.stdin)
    .map((chunk: string) => `Got on stdin: ${chunk}`)
    .do(async (chunk: string) => { process.stdout.write(chunk); });
}
