import asyncio


async def run(context, input):
    """Says it is unhealthy."""
    context.set_health_check(lambda: {"healthy": False})
    await asyncio.sleep(1000)
