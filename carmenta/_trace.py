import sys
import time


def T(label):
    print(f"TRACE {time.time():.4f} {label}", file=sys.stderr, flush=True)
