// After a while, one result: a string.
module.exports = async function (_input, timeout = 10000) {
  await new Promise((resolve) => setTimeout(resolve, timeout));
  return "Your result";
};
