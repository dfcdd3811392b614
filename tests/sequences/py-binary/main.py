import hashlib
import random


def run(context, input, size=300_000):
    rng = random.Random(7)
    data = bytes(rng.getrandbits(8) for _ in range(size))
    print(hashlib.sha256(data).hexdigest())
    return [data[i:i + 4096] for i in range(0, len(data), 4096)]
