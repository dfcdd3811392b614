class TestException(Exception):
    pass


def run(context, input):
    """Fails as it is called."""
    raise TestException("This exception should appear on stderr")
