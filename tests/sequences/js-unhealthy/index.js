module.exports = function () {
  this.addMonitoringHandler(() => ({ healthy: false }));
  return new Promise(() => {});
};
