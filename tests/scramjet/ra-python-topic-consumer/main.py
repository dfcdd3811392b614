requires = {"requires": "topic-test", "contentType": "text/plain"}


def run(context, input):
    """The text topic topic-test (declared by the module), each line prefixed."""
    return input.map(lambda line: f"consumer got: {line}")
