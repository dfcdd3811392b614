"""The seed's counter in Python: yields `length` numbers starting at `initial`."""


async def run(context, input, initial=0, length=1000):
    for i in range(initial, initial + length):
        yield i
