// Says it is unhealthy; counts to three, a second apart; its stop handler saves its state.
export = async function (this: any) {
  let x = (this.initialState && this.initialState.x) || 0;
  this.addMonitoringHandler(() => ({ healthy: false }));
  this.addStopHandler(() => { this.save({ x }); });
  while (++x < 4) {
    console.log({ x });
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
};
