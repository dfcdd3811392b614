import asyncio


def fetch_page():
    return "Your result \n"


async def run(context, input):
    """A result now and then, for ever: one character at a time, as the template iterates its string."""
    while True:
        for character in fetch_page():
            yield character
        await asyncio.sleep(0.2)
