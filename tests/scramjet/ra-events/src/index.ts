// Answers each test-event with a test-response.
export default async function (this: any) {
  this.on("test-event", async (message: string) => { this.emit("test-response", `reply to ${message}`); });
  await new Promise((resolve) => setTimeout(resolve, 60000));
}
