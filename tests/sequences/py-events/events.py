import asyncio


async def run(context, input):
    context.on("test-event", lambda m: context.emit("test-response", f"reply to {m}"))
    await asyncio.sleep(60)
