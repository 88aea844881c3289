"""Print the figures of a finished `optdsl search` database (see bench/search_benchmark.md).

    python bench/search_figures.py /tmp/bench-search/run.db
"""

from __future__ import annotations

import json
import sys

from optdsl.search.report import benchmark_figures
from optdsl.search.store import Store


def main(path: str) -> None:
    store = Store(path)
    try:
        print(json.dumps(benchmark_figures(store), indent=2))
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1])
