def run(context, input):
    """The length of each chunk of its input (lines of text, or blocks of bytes), printed too."""
    return input.map(len).each(print).map(lambda length: f"{length},")
