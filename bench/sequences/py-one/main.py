def run(context, input):
    return "ready\n"
