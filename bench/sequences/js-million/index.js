module.exports = async function* (_input, count = 1000000) {
  for (let i = 0; i < count; i++) yield i;
};
