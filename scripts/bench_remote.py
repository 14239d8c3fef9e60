"""One training epoch read from a local S3 server with added latency, as a ratio of the same epoch from local
disk, in one run: rows/s of both, GET requests per row group (counted by the server's proxy and by streamgd),
the read latency and prefetch depth streamgd measured, and peak RSS.

The S3 server is moto (tests/s3_latency.py) in this process, behind a proxy that delays each request by
``--delay-ms``; each epoch trains in its own subprocess (so its peak RSS is its own), alternating local and
remote ``--repeats`` times; the medians are reported. moto serves from Python: its own time per request and its
throughput, measured here without the proxy, are reported too, as they can bound the ratio rather than latency.

    python scripts/bench_remote.py                    # 1,048,576 rows x 32 float32, 16 files, 20 ms a request
    python scripts/bench_remote.py --delay-ms 50 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def child(args: argparse.Namespace) -> None:
    """Train ``args.epochs`` epochs on ``args.source``; print each epoch's window and record as JSON."""
    from streamgd.training import epoch as core
    from streamgd.training.trainer import Trainer

    trainer = Trainer(model="logistic", epochs=1, prefetch_depth=args.prefetch)
    dataset = trainer.open(args.source, target="y")
    run, state = trainer.prepare(dataset)  # the statistics and classes passes
    epochs = []
    for _ in range(args.epochs):
        start, cpu = time.time(), _cpu_seconds()
        record = core.run_epoch(trainer.config, run, trainer.job, state)
        core.end_epoch(trainer.config, run, state, record)
        epochs.append({"start": start, "end": time.time(), "cpu_seconds": round(_cpu_seconds() - cpu, 3),
                       "rows_per_s": record["rows_per_s"],
                       "seconds": record["seconds"], "peak_rss_mb": record["peak_rss_mb"],
                       "remote_reads": record.get("remote_reads")})
    print(json.dumps({"epochs": epochs, "row_groups": dataset.n_row_groups}))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_child(source: str, args: argparse.Namespace, env: dict) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", "--source", source, "--epochs",
               str(args.epochs), "--prefetch", str(args.prefetch)]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {source} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_data(args: argparse.Namespace) -> str:
    from streamgd.bench.synthetic import make_dataset

    path = os.path.join(args.data_dir, f"remote-{args.rows}x{args.features}-rg{args.row_group_size}-f{args.files}")
    if not os.path.isdir(path):
        make_dataset(path, n_rows=args.rows, n_features=args.features, task="binary",
                     row_group_size=args.row_group_size, n_files=args.files, dtype="float32", seed=0)
    return path


def measure_moto(s3, bucket: str, key: str, size: int, streams: int) -> dict:
    """moto alone (no proxy, no delay): time of a 100-byte range GET, of a ``size``-byte one, and the bytes/s of
    ``streams`` concurrent ``size``-byte GETs."""
    fs = s3.filesystem(through_proxy=False)
    handle = fs.open_input_file(f"{bucket}/{key}")
    size = min(size, handle.size())

    def timed(nbytes: int) -> float:
        start = time.perf_counter()
        handle.read_at(nbytes, 0)
        return time.perf_counter() - start

    small = statistics.median(timed(100) for _ in range(9))
    whole = statistics.median(timed(size) for _ in range(5))
    n = 4 * streams
    with ThreadPoolExecutor(max_workers=streams) as pool:
        start = time.perf_counter()
        list(pool.map(lambda _: timed(size), range(n)))
        seconds = time.perf_counter() - start
    return {"small_get_ms": round(1e3 * small, 2), "row_group_get_ms": round(1e3 * whole, 2),
            "row_group_bytes": size, "concurrent_streams": streams,
            "concurrent_mb_per_s": round(n * size / seconds / 1e6, 1)}


def server_cpu(s3) -> float:
    """CPU seconds moto (its own process, or this one) and the proxy (this process) have used."""
    import psutil

    total = _cpu_seconds()
    if s3._process is not None:
        times = psutil.Process(s3._process.pid).cpu_times()
        total += times.user + times.system
    return total


def _range_bytes(header: str | None) -> int:
    if not header or not header.startswith("bytes="):
        return 0
    first, _, last = header[6:].partition("-")
    return int(last) - int(first) + 1 if first and last else 0


def server_gets(requests: list, window: tuple[float, float]) -> tuple[int, int]:
    """GET and HEAD requests the server got in a time window."""
    inside = [r for r in requests if window[0] <= r.time <= window[1]]
    return sum(r.method == "GET" for r in inside), sum(r.method == "HEAD" for r in inside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16 * 65_536)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--row-group-size", type=int, default=65_536)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="added to each request by the proxy")
    parser.add_argument("--prefetch", type=int, default=None, help="the prefetch depth (default: streamgd's)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (the medians are over all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--moto-in-process", action="store_true",
                        help="run moto on a thread of this process (default: its own process)")
    parser.add_argument("--data-dir", default="bench-data")
    parser.add_argument("--json", default=None, help="write the results here too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prefetch is None:
        from streamgd.data.reader import DEFAULT_PREFETCH_DEPTH

        args.prefetch = DEFAULT_PREFETCH_DEPTH
    if args.child:
        child(args)
        return
    from s3_latency import LocalS3

    path = make_data(args)
    bucket, delay = "bench-remote", args.delay_ms / 1e3
    runs: dict[str, list[dict]] = {"local": [], "remote_no_delay": [], "remote": []}
    with LocalS3(delay=delay, process=not args.moto_in_process) as s3:
        keys = s3.upload_dir(path, bucket, "train")
        first = run_child(path, args, {})  # compiles what the numba cache lacks; not counted
        row_groups = first["row_groups"]
        data_bytes = sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path))
        moto = measure_moto(s3, bucket, keys[0], data_bytes // row_groups, streams=8)
        remote = f"s3://{bucket}/train"
        server = server_cpu(s3)
        load = [round(x, 2) for x in os.getloadavg()]
        s3.proxy.clear()
        for _ in range(args.repeats):
            runs["local"].append(run_child(path, args, {}))
            s3.proxy.delay = 0.0
            runs["remote_no_delay"].append(run_child(remote, args, s3.environ()))
            s3.proxy.delay = delay
            runs["remote"].append(run_child(remote, args, s3.environ()))
        requests = list(s3.proxy.requests)
        served_mb = sum(_range_bytes(r.range) for r in requests) / 1e6
        server_cpu_ms_per_mb = round(1e3 * (server_cpu(s3) - server) / served_mb, 2)
    epochs = {name: [e for r in done for e in r["epochs"]] for name, done in runs.items()}
    rate = {name: statistics.median(e["rows_per_s"] for e in found) for name, found in epochs.items()}
    per_epoch = [server_gets(requests, (e["start"], e["end"])) for e in epochs["remote"]]
    bytes_per_row = data_bytes / args.rows
    results = {
        "config": {"rows": args.rows, "features": args.features, "row_group_size": args.row_group_size,
                   "files": args.files, "row_groups": row_groups, "parquet_mb": round(data_bytes / 1e6, 1),
                   "delay_ms": args.delay_ms, "prefetch": args.prefetch, "epochs_per_run": args.epochs,
                   "repeats": args.repeats, "moto": "in process" if args.moto_in_process else "own process"},
        "rows_per_s": {name: round(value) for name, value in rate.items()},
        "ratio": round(rate["remote"] / rate["local"], 3),
        "ratio_no_delay": round(rate["remote_no_delay"] / rate["local"], 3),
        "delay_cost": round(rate["remote"] / rate["remote_no_delay"], 3),
        "server_gets_per_row_group": sorted({round(g / row_groups, 3) for g, _ in per_epoch}),
        "server_heads_per_epoch": sorted({h for _, h in per_epoch}),
        "streamgd_requests_per_row_group": sorted({e["remote_reads"]["requests_per_row_group"]
                                                   for e in epochs["remote"]}),
        "read_latency_ms": {name: statistics.median(e["remote_reads"]["read_latency_ms"] for e in epochs[name])
                            for name in ("remote_no_delay", "remote")},
        "max_prefetch_depth": {name: sorted({e["remote_reads"]["max_prefetch_depth"] for e in epochs[name]})
                               for name in ("remote_no_delay", "remote")},
        "peak_rss_mb": {name: max(e["peak_rss_mb"] for e in found) for name, found in epochs.items()},
        "cpu_seconds_per_epoch": {name: statistics.median(e["cpu_seconds"] for e in found)
                                  for name, found in epochs.items()},
        "server_cpu_ms_per_mb": server_cpu_ms_per_mb,
        "server_cpu_seconds_per_epoch": round(server_cpu_ms_per_mb * data_bytes / 1e9, 3),
        "load_average_at_start": load,
        "moto_alone": moto,
        "moto_bound_rows_per_s": round(moto["concurrent_mb_per_s"] * 1e6 / bytes_per_row),
        "epochs_rows_per_s": {name: [e["rows_per_s"] for e in found] for name, found in epochs.items()},
    }
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(results, stream, indent=1)


if __name__ == "__main__":
    main()
