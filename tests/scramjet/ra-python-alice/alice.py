import asyncio
import json

from scramjet.streams import Stream


async def greet(person):
    await asyncio.sleep(0.1)
    return f"Hello {person['name'].strip()}!\n"


def run(context, input):
    """Greets each person of its data.json (read in 1 KiB pieces), printing the greetings too."""
    source = open("data.json")
    people = Stream.read_from(source, chunk_size=1024, max_parallel=1)
    return people.flatmap(json.loads).map(greet).each(lambda line: print(line.strip()))
