module.exports = function () {
  for (;;) {} // never yields to the event loop
};
