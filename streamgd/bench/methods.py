"""What the nightly benchmark runs: its methods (streamgd variants and baselines), the sizes, and the nightly and
quick configurations.

>>> parse_sizes("50k,200k,1M,16000000")
[50000, 200000, 1000000, 16000000]
>>> make_config(quick=True).sizes
[50000, 200000]
"""

from __future__ import annotations

import dataclasses
from typing import Any

STREAMGD_METHODS: dict[str, tuple[str, ...]] = {
    "sgd": ("--batch-size", "1"),
    "minibatch": ("--batch-size", "1024"),
    "full-batch": ("--batch-size", "full"),
    "minibatch-budget": ("--batch-size", "1024", "--memory-budget", "{budget}MB"),
}
BASELINE_METHODS = ("decode-floor", "numpy-in-memory", "sklearn-partial-fit")
ALL_METHODS = tuple(STREAMGD_METHODS) + BASELINE_METHODS
QUICK_METHODS = ("minibatch", "minibatch-budget", "decode-floor", "numpy-in-memory")
LABELS = {
    "sgd": "streamgd SGD (batch 1)",
    "minibatch": "streamgd mini-batch 1,024",
    "full-batch": "streamgd full batch",
    "minibatch-budget": "streamgd mini-batch, --memory-budget {budget}MB",
    "decode-floor": "decode floor (pyarrow read_row_group)",
    "numpy-in-memory": "in-memory NumPy full-batch GD",
    "sklearn-partial-fit": "scikit-learn SGDClassifier.partial_fit",
}
# The in-memory NumPy baseline is skipped when it would need more than this fraction of the available memory.
NUMPY_MEMORY_FRACTION = 0.5

TINY_ROWS = 64


def parse_sizes(text: str) -> list[int]:
    """Row counts from ``"1000000,4000000"``; ``k``, ``M`` and ``G`` suffixes are 10^3, 10^6, 10^9."""
    sizes = []
    for part in text.split(","):
        part = part.strip().replace("_", "")
        if not part:
            continue
        scale = {"k": 10**3, "K": 10**3, "m": 10**6, "M": 10**6, "g": 10**9, "G": 10**9}.get(part[-1], 1)
        number = part[:-1] if scale != 1 else part
        try:
            value = int(float(number) * scale)
        except ValueError:
            raise ValueError(f"size {part!r} is not a row count such as 1000000 or 4M") from None
        if value < 1:
            raise ValueError(f"size {part!r} must be at least 1 row")
        sizes.append(value)
    if not sizes:
        raise ValueError(f"no sizes in {text!r}")
    return sorted(set(sizes))


@dataclasses.dataclass
class BenchConfig:
    """What to run. ``make_config`` gives the nightly and the quick defaults."""

    sizes: list[int] = dataclasses.field(default_factory=lambda: [1_000_000, 4_000_000, 16_000_000])
    n_features: int = 32
    row_group_size: int = 65_536
    methods: tuple[str, ...] = ALL_METHODS
    data_dir: str = "bench-data"
    out_dir: str = "bench-out"
    quick: bool = False
    # runs of each method per size: the fastest counts for throughput, the median for peak RSS (one run's peak moves
    # by 30-50 MB with thread and allocator timing on the 2-core machine; a median of three is steady enough for
    # the 10% growth gate)
    repeat: int = 3
    floor_repeat: int = 2  # the decode floor runs first and last at each size; the faster counts
    memory_budget_mb: int = 64
    numpy_steps: int = 5
    sample_interval: float = 0.02
    timeout: float = 3600.0
    seed: int = 0

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in ALL_METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(ALL_METHODS)}")
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError("sizes must be positive row counts")
        if self.n_features < 1 or self.row_group_size < 1 or self.repeat < 1 or self.floor_repeat < 1:
            raise ValueError("n_features, row_group_size, repeat and floor_repeat must be at least 1")


def make_config(quick: bool = False, **overrides: Any) -> BenchConfig:
    """The nightly configuration, or with ``quick`` tiny sizes (50k and 200k rows x 8 features, row groups of
    16,384 so that even the smallest file has several row groups in flight) and fewer methods."""
    if quick:
        base = dict(sizes=[50_000, 200_000], n_features=8, row_group_size=16_384, methods=QUICK_METHODS,
                    quick=True, repeat=1)
    else:
        base = {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    if "sizes" in base:
        base["sizes"] = sorted(set(int(s) for s in base["sizes"]))
    base["methods"] = tuple(base.get("methods", ALL_METHODS))
    config = BenchConfig(**base)
    config.validate()
    return config


def label(method: str, budget_mb: int = 64) -> str:
    """The name a method has in reports and plots."""
    return LABELS.get(method, method).format(budget=budget_mb)
