module.exports = function () {
  this.addStopHandler(async () => {
    process.stdout.write("Cleaning up... ");
    await new Promise((r) => setTimeout(r, 1000));
    process.stdout.write("Cleanup done.\n");
  });
  this.logger.info("stop handler ready");
  return new Promise(() => {});
};
