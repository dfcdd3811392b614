"""A producer: one name per line, a few a second. Started with --output-topic, its output also
goes to that topic, where other sequences (and si topic get) read it."""

import asyncio

NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Dennis", "Frances", "Ken"]


async def run(context, input, count=10, pause=0.2):
    for i in range(int(count)):
        yield f"{NAMES[i % len(NAMES)]}\n"
        await asyncio.sleep(float(pause))
