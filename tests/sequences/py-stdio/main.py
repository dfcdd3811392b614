import sys


def run(context, input):
    for line in sys.stdin:
        print(f"Got on stdin: {line.strip()}")
