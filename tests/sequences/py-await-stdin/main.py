import asyncio
import sys


async def run(context, input):
    """Awaits its stdin while other work goes on: events, health, its own tasks."""
    async def tick():
        for n in range(1, 4):
            context.emit("tick", n)
            await asyncio.sleep(0.05)

    asyncio.ensure_future(tick())
    line = await sys.stdin.read()
    yield f"got {line}"
