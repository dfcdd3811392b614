import sys

from scramjet.streams import Stream


async def run(context, input):
    """Answers each line of stdin on stdout."""
    await Stream.read_from(sys.stdin).map(lambda line: f"Got on stdin: {line}").write_to(sys.stdout)
