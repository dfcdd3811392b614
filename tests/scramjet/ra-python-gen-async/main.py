async def save(item):
    return f"saved to db: {item}"


async def run(context, input):
    """Saves each line of its input, an async generator."""
    async for item in input:
        yield await save(item)
