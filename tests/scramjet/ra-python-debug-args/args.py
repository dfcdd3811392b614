import json

from scramjet.streams import Stream


def run(context, input, first, second):
    """Its two arguments as one compact JSON object, a character at a time."""
    return Stream.read_from(json.dumps({"first_arg": first, "second_arg": second}, separators=(",", ":")))
