// Counts to four on stdout, a second apart; its stop handler would save its state.
module.exports = async function () {
  let x = (this.initialState && this.initialState.x) || 0;
  this.addStopHandler(() => this.save({ x }));
  while (++x < 5) {
    console.log({ x });
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
};
