// Asked to stop with SEND_KEEPALIVE as its first argument, it keeps itself alive instead.
export default async function (this: any, _input: any, ...args: string[]) {
  if (args[0] === "SEND_KEEPALIVE") this.addStopHandler(() => { this.keepAlive(parseInt(args[1], 10)); });
  await new Promise((resolve) => setTimeout(resolve, 60000));
}
