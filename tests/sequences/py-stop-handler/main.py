import asyncio


async def cleanup():
    print("Cleaning up...", end=" ", flush=True)
    await asyncio.sleep(1)
    print("Cleanup done.", flush=True)


async def run(context, input):
    context.set_stop_handler(lambda timeout=0, can_keep_alive=False: cleanup())
    context.logger.info("stop handler ready")
    await asyncio.sleep(10**9)
