// After a while, one result, yielded (so a JSON line).
export default async function* () {
  await new Promise((resolve) => setTimeout(resolve, 500));
  yield "Your result";
}
