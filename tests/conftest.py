"""Small Parquet files written in tmp dirs for the tests."""

from __future__ import annotations

import os

# scikit-learn's estimator checks include check_array_api_input (with NumPy), which skips itself unless SciPy's
# array API support is on; it is read when SciPy is first imported, so set it before anything imports SciPy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from problems import write_xy  # noqa: E402


def reported_lines(stderr: str) -> list[str]:
    """The lines of a command's stderr that report something, without the informational ones: the first compile
    of a kernel specialisation ("compiling kernels for ...", printed by whichever test compiles it first) and
    notes ("note: ...")."""
    return [line for line in stderr.strip().splitlines()
            if line and not line.startswith(("compiling kernels for ", "note: "))]


def write_table(path, columns: dict, row_group_size: int) -> str:
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return str(path)


@pytest.fixture
def numbered(tmp_path):
    """2,000 rows in row groups of 300: an id column, float, int and bool features and a target."""
    rng = np.random.default_rng(0)
    n = 2000
    return write_table(tmp_path / "numbered.parquet", {
        "row_id": np.arange(n, dtype=np.int64), "f": rng.standard_normal(n), "i": rng.integers(0, 9, n),
        "b": rng.random(n) < 0.5, "y": rng.standard_normal(n)}, 300)


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    rng = np.random.default_rng(7)
    n, d = 3000, 5
    X = rng.standard_normal((n, d))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.7 + 0.5 * rng.standard_normal(n)
    return write_xy(tmp_path_factory.mktemp("reg") / "r.parquet", X, y, 512), X, y


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    rng = np.random.default_rng(11)
    n, d = 3000, 4
    X = rng.standard_normal((n, d))
    p = 1 / (1 + np.exp(-(X @ np.array([1.5, -1.0, 0.5, 0.0]) - 0.3)))
    y = (rng.random(n) < p).astype(np.int64)
    return write_xy(tmp_path_factory.mktemp("clf") / "c.parquet", X, y, 512), X, y


# The optimizers every default test run exercises; matrices over all of them mark the rest slow (nightly), since
# each optimizer compiles kernels of its own (5-10 s of CPU each on a cold cache).
EVERY_RUN_OPTIMIZERS = ("sgd", "adagrad", "adam", "ftrl")


def optimizer_params(names):
    """``names`` as pytest params, those outside EVERY_RUN_OPTIMIZERS marked slow."""
    return [pytest.param(name, marks=() if name in EVERY_RUN_OPTIMIZERS else pytest.mark.slow) for name in names]


def local_client(n_workers: int):
    """A client of a local dask cluster of ``n_workers`` worker processes (one thread each), closed after."""
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    with distributed.Client(cluster) as connected:
        yield connected
    cluster.close()


@pytest.fixture(scope="module")
def client():
    """A local dask cluster of two worker processes, one per test module."""
    yield from local_client(2)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 protocol server on 127.0.0.1 (moto, credentials checked) behind a request-logging, fault-injecting
    proxy; one per test process (each pytest-xdist worker has its own, on its own port). See tests/s3_server.py."""
    from s3_server import start_s3_server  # moto[server] and boto3: the test extra

    server = start_s3_server()
    yield server
    server.stop()


def set_environment(values: dict) -> dict:
    """Set (None: remove) environment variables of this process; return their previous values (dask workers run it
    through ``client.run`` to take a store's credentials, and again to give them back)."""
    previous = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return previous
