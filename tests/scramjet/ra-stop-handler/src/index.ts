// Cleans up when asked to stop: a second's work, said on stdout.
export default async function (this: any) {
  this.addStopHandler(async () => {
    process.stdout.write("Cleaning up... ");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    process.stdout.write("Cleanup done.\n");
  });
  await new Promise((resolve) => setTimeout(resolve, 10 ** 9));
}
