import { StringStream } from "scramjet";

// Lines of stdin that start with a number: odd ones to stdout, even ones to stderr.
module.exports = async function (this: any) {
  await StringStream.from(process.stdin)
    .lines("\n")
    .parse((line: string) => [+(line.match(/^\w+/) || []).pop(), line])
    .filter(([n]: any) => !isNaN(n))
    .do(async ([n, line]: any) => {
      const stream = n % 2 ? process.stdout : process.stderr;
      if (!stream.write(line + "\n")) await new Promise((resolve) => stream.once("drain", resolve));
    })
    .run();
  await new Promise((resolve) => setTimeout(resolve, 100));
};
