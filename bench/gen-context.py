#!/usr/bin/env python3
"""Writes a deterministic build context for bench/copy-context.sh and
bench/peers.sh.

Usage: gen-context.py DIR [N]

N is the number of files, 100000 when not given (a smoke run takes a few
thousand).

DIR gets a Dockerfile (`FROM scratch` + `COPY . /data/`) and N files under
tree/AAA/BB/, 100 files per leaf directory. File i is the same in every tree
(its bytes come from a generator seeded with i), so the 10,000-file tree is a
prefix of the 100,000-file one and only the file count changes between sizes.

Each file is 2-18 KiB (uniform, mean 10 KiB: 100,000 files are about 1 GiB):
half random bytes, which no compressor can shrink, and half hexadecimal text
of random bytes, which compresses to about half, so the compressors have real
work to do and the output is about 3/4 of the input.
"""

import os
import random
import sys

DEFAULT_FILES = 100_000
FILES_PER_DIR = 100
MIN_SIZE = 2 * 1024
MAX_SIZE = 18 * 1024

DOCKERFILE = "FROM scratch\nCOPY . /data/\n"


def file_bytes(i: int) -> bytes:
    rng = random.Random(i)
    size = rng.randint(MIN_SIZE, MAX_SIZE)
    header = f"kiln bench file {i}\n".encode()
    rest = size - len(header)
    raw = rest // 2
    text = rest - raw
    return header + rng.randbytes(raw) + rng.randbytes((text + 1) // 2).hex().encode()[:text]


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    root = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) == 3 else DEFAULT_FILES
    if count < 1:
        print("gen-context.py: N must be at least 1", file=sys.stderr)
        return 2
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)
    total = 0
    for i in range(count):
        d = i // FILES_PER_DIR
        leaf = os.path.join(root, "tree", f"{d // 100:03d}", f"{d % 100:02d}")
        if i % FILES_PER_DIR == 0:
            os.makedirs(leaf, exist_ok=True)
        data = file_bytes(i)
        total += len(data)
        with open(os.path.join(leaf, f"f{i:06d}.bin"), "wb") as f:
            f.write(data)
    print(f"{root}: {count} files, {total / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
