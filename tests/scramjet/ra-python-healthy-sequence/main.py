import asyncio

from scramjet.streams import Stream


async def run(context, input):
    """0 to 3 as text, one every 500 ms, each printed as a dict."""
    counted = Stream.read_from(range(4), max_parallel=1).map(str).each(lambda n: asyncio.sleep(0.5))
    return counted.each(lambda n: print({"x": n}))
