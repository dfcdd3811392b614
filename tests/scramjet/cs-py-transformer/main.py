async def look_up(data):
    return "Your result: " + data + "\n"


async def run(context, input):
    """Each line of its input, looked up."""
    async for chunk in input:
        yield await look_up(chunk)
