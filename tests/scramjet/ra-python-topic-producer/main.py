provides = {"provides": "topic-test", "contentType": "text/plain"}


def run(context, input):
    """Its input, each line prefixed, on the text topic topic-test (declared by the module)."""
    return input.map(lambda line: f"producer got: {line}\n")
