// The seed's sequence: yields `length` numbers starting at `initialNumber`.
module.exports = async function* (initialNumber = 0, length = 1000) {
  for (let i = initialNumber; i < initialNumber + length; i++) yield i;
};
