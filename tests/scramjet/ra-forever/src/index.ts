// Waits for ever.
export default async function () {
  return await new Promise((resolve) => setTimeout(resolve, 10 ** 9));
}
