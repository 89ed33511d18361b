"""Data loading: a cold split build vs a load from the split cache, per dataset.

Cold = read every input file, verify its sha256, pool every region, crop the images and write the
cache (``bench.data.cache.load`` with an empty cache folder). Cached = the same call again (a fresh
process, the cache folder now holding the entry). Each measurement runs in its own process so
peak resident memory (``ru_maxrss``) belongs to that load alone; imports are excluded from the
time. Prints seconds, the ratio cold / cached and peak memory. Usage:
``python benchmarks/split_loading.py [--datasets all] [--data-dir D] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _measure(name: str, data_dir: str) -> None:
    """Child process: one ``cache.load``; prints {"s": seconds, "rss_mb": peak} as JSON."""
    import resource

    sys.path.insert(0, str(REPO))
    from bench.data import cache, cards

    card = cards.load_card(name)
    start = time.perf_counter()
    cache.load(card, cards.data_dir(data_dir), card.split["default_pooling"])
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"s": seconds, "rss_mb": rss}))


def _child(name: str, data_dir: str, cache_dir: str) -> dict:
    env = {**os.environ, "STSR_CACHE_DIR": cache_dir}
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, "--data-dir", data_dir],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="all")
    parser.add_argument("--data-dir", default=os.environ.get("STSR_DATA_DIR", ""))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _measure(args.child, args.data_dir)
        return
    sys.path.insert(0, str(REPO))
    from bench.data import cards

    names = cards.resolve_datasets(args.datasets)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; best of {args.repeat}"
    )
    cols = ("cold s", "cached s", "ratio", "cold MB", "cached MB")
    header = f"{'dataset':<32} " + " ".join(f"{c:>9}" for c in cols)
    print(header)
    print("-" * len(header))
    for name in names:
        cold, warm = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                cold.append(_child(name, args.data_dir, tmp))
                warm.append(_child(name, args.data_dir, tmp))
        c = min(cold, key=lambda r: r["s"])
        w = min(warm, key=lambda r: r["s"])
        print(
            f"{name:<32} {c['s']:>9.3f} {w['s']:>9.3f} {c['s'] / w['s']:>8.1f}x "
            f"{max(r['rss_mb'] for r in cold):>9.0f} {max(r['rss_mb'] for r in warm):>9.0f}"
        )


if __name__ == "__main__":
    main()
