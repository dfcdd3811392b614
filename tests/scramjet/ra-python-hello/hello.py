from scramjet.streams import Stream


def run(context, input):
    """Greets each line of its input."""
    return Stream.read_from(input).map(lambda name: f"Hello {name}!")
