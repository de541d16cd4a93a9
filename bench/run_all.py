"""Run every benchmark in bench/ in turn (``make bench``); each prints its Markdown table."""

from __future__ import annotations

import importlib
import pkgutil

import bench


def main() -> None:
    for module in sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")):
        print(f"\n## {module}\n", flush=True)
        importlib.import_module(f"bench.{module}").main()


if __name__ == "__main__":
    main()
