from scramjet.streams import Stream


async def run(context, input):
    """A stream of its own with one greeting, never ended."""
    stream = Stream()
    stream.write("Hello World!")
    return stream
