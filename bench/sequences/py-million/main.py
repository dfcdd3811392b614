async def run(context, input, count=1_000_000):
    for i in range(count):
        yield f"{i}\n"
