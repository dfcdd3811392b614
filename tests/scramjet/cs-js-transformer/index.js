async function lookUp(data) {
  return "Your result: " + data;
}

// Each chunk of its input, looked up: a generator (so JSON lines).
module.exports = async function* (input) {
  for await (const chunk of input) yield await lookUp(chunk);
};
