async function save(data) {
  return "saved";
}

// Takes its input and keeps it somewhere: no output.
module.exports = async function* (input) {
  for await (const chunk of input) await save(chunk);
};
