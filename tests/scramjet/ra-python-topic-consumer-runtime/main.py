def run(context, input):
    """A topic named by the stream it returns, each line prefixed."""
    result = input.map(lambda line: f"consumer got: {line}").each(print)
    result.requires = "topic-test"
    result.content_type = "text/plain"
    return result
