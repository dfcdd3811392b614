import asyncio


async def run(context, input):
    """Waits for ever."""
    await asyncio.sleep(10**9)
