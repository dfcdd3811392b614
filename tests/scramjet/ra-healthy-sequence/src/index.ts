// Counts to three, a second apart.
export = async function (this: any) {
  let x = (this.initialState && this.initialState.x) || 0;
  while (++x < 4) {
    console.log({ x });
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
};
