import asyncio


async def run(context, input, mode=""):
    async def on_stop(timeout, can_keep_alive):
        if mode == "SEND_KEEPALIVE" and can_keep_alive:
            await context.keep_alive(1)

    context.set_stop_handler(on_stop)
    context.logger.info("stop handler ready")
    await asyncio.sleep(10**9)
