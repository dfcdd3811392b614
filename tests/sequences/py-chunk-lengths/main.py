def run(context, input):
    return input.map(len).map(lambda n: f"{n},")
