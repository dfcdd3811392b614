const { PassThrough } = require("stream");

// Starts the sequence whose id it is given (through this.hub); outputs the new instance's id.
module.exports = async function (_input, sequenceId) {
  const out = new PassThrough();
  try {
    const sequence = await this.hub.getSequenceClient(sequenceId);
    const instance = await sequence.start({ appConfig: {}, args: [] });
    out.end(instance.id + "\n");
  } catch (e) {
    console.error(e);
  }
  return out;
};
