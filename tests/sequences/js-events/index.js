module.exports = function () {
  this.on("test-event", (m) => this.emit("test-response", "reply to " + m));
  return new Promise((r) => setTimeout(r, 60000));
};
