import asyncio


async def run(context, input):
    """Cleans up when asked to stop: a second's work, said on stdout."""
    async def clean_up():
        print("Cleaning up...", end=" ")
        await asyncio.sleep(1)
        print("Cleanup done.")

    context.set_stop_handler(lambda timeout=0, can_keep_alive=False: clean_up())
    await asyncio.sleep(10**9)
