module.exports = function () {
  return "ready\n";
};
