module.exports = async function* (input) {
  for await (const item of input) yield { name: item.name, upper: item.name.toUpperCase() };
};
