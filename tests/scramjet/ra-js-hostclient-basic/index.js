const { PassThrough } = require("stream");

// Asks its hub about itself (this.hub): prints what it says; outputs how many sequences and
// instances it lists.
module.exports = async function () {
  const out = new PassThrough();
  try {
    console.log(await this.hub.getVersion());
    console.log(await this.hub.getLoadCheck());
    console.log(await this.hub.getConfig());
    console.log(await this.hub.getStatus());
    out.write((await this.hub.listSequences()).length + "\n");
    out.write((await this.hub.listInstances()).length + "\n");
    out.end();
  } catch (e) {
    console.error(e);
  }
  return out;
};
