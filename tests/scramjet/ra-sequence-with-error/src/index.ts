// Counts to three, then fails.
export = async function (this: any) {
  let x = 0;
  while (++x < 4) {
    console.log({ x });
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error("Sorry m8");
};
