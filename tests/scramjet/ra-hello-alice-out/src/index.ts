const scramjet = require("scramjet");
const JSONStream = require("JSONStream");
const fs = require("fs");

// Greets each person of its data.json, one every 200 ms, as strings of its own DataStream.
export default function (this: any, _input: any, file = `${__dirname}/data.json`) {
  return fs.createReadStream(file)
    .pipe(JSONStream.parse("*"))
    .pipe(new scramjet.DataStream())
    .setOptions({ maxParallel: 1 })
    .do(() => new Promise((resolve) => setTimeout(resolve, 200)))
    .map((person: { name: string }) => `Hello ${person.name}!\n`)
    .do(console.log);
}
