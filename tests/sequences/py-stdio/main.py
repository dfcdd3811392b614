import sys


async def run(context, input):
    # As on Scramjet's hub, sys.stdin is a scramjet Stream of decoded lines, read on the event loop.
    async for line in sys.stdin:
        print(f"Got on stdin: {line.strip()}")
