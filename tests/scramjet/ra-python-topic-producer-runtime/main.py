def run(context, input):
    """Its input, each line prefixed, on a topic named by the stream it returns."""
    result = input.map(lambda line: f"producer got: {line}" + "\n").each(print)
    result.provides = "topic-test"
    result.content_type = "text/plain"
    return result
