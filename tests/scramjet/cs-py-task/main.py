import asyncio


async def run(context, input):
    """After a while, one result."""
    await asyncio.sleep(0.5)
    return "Your result \n"
