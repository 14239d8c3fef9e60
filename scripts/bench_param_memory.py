"""Peak RSS of `streamgd fit` (and `predict`) against the size of the model's parameters and optimizer state:
what a run holds beside them (issue 28: peak RSS within the zero-parameter run + 2 x (parameters + state)).

    python3 scripts/bench_param_memory.py --data CTR_DATA --target label   # a click log, e.g. scripts/bench_ctr.py's
    python3 scripts/bench_param_memory.py --data DATA --target label --optimizers sgd,ftrl --bits 24 --predict
    python3 scripts/bench_param_memory.py --data DATA --target label --dense-rows 200000   # and a dense table
    python3 scripts/bench_param_memory.py --data FFM_DATA --target label --optimizers ftrl --bits 20 --ffm

Each run is a child process (`streamgd fit ... --out model.safetensors`) whose own peak RSS (``ru_maxrss`` from
``os.wait4``) is read; this script imports only the standard library, so a child's figure does not start at a
large parent's. For each optimizer it runs the click log at ``--base-bits`` (a parameter vector of a few hundred
KB: the run's floor of interpreter, libraries, chunks and compiled code) and at ``--bits``, and prints per run:
peak RSS, the model file's size (parameters + state as float64), and the excess over the floor in units of the
model file. ``--ffm`` trains field-aware factorization machines (``FFM_ARGS``) and prints issue 28's bound beside
each large run: the model file + 300 MB; every large run is also set against the issue's aim, the floor + 2 x
the model file. MB are 10^6 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

MB = 1e6
FFM_ARGS = "--field-aware --factors 4 --interactions none --missing impute"  # as scripts/bench_fm.py's ffm
BOUND_EXTRA_MB = 300  # issue 28: peak RSS within parameters + optimizer state + 300 MB


def run_child(cmd: list[str]) -> tuple[float, int, str]:
    """(peak RSS in MB, exit status, stderr's last line) of ``cmd`` run to its end."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    return usage.ru_maxrss * 1024 / MB, proc.returncode, lines[-1] if lines else ""


def fit(data: str, target: str, out: str, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "streamgd", "fit", data, "--target", target, "--out", out, "--quiet", *extra]
    rss, code, last = run_child(cmd)
    size = os.path.getsize(out) / MB if code == 0 and os.path.exists(out) else float("nan")
    return {"args": " ".join(extra), "peak_rss_mb": round(rss, 1), "model_mb": round(size, 1), "status": code,
            **({"error": last} if code else {})}


def predict(model: str, data: str, out: str) -> dict:
    rss, code, last = run_child([sys.executable, "-m", "streamgd", "predict", model, data, "--out", out])
    return {"peak_rss_mb": round(rss, 1), "status": code, **({"error": last} if code else {})}


def make_dense(path: str, rows: int, features: int) -> None:
    cmd = [sys.executable, "-m", "streamgd", "make-data", path, "--rows", str(rows), "--features", str(features),
           "--task", "binary"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a click log (Parquet)")
    parser.add_argument("--target", default="label")
    parser.add_argument("--optimizers", default="sgd,ftrl,adagrad")
    parser.add_argument("--bits", type=int, default=24)
    parser.add_argument("--base-bits", type=int, default=12)
    parser.add_argument("--fit-args", default="", help="more `streamgd fit` options, one string")
    parser.add_argument("--ffm", action="store_true", help=f"field-aware factorization machines: adds {FFM_ARGS!r}")
    parser.add_argument("--predict", action="store_true", help="also predict with each large model")
    parser.add_argument("--dense-rows", type=int, default=0, help="also a dense table of this many rows")
    parser.add_argument("--dense-features", type=int, default=2000)
    parser.add_argument("--json", help="write the records here too")
    args = parser.parse_args(argv)
    if args.ffm:
        args.fit_args = f"{FFM_ARGS} {args.fit_args}"
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for opt in args.optimizers.split(","):
            floor_model = os.path.join(tmp, "floor.safetensors")
            floor = fit(args.data, args.target, floor_model,
                        ["--optimizer", opt, "--hash-bits", str(args.base_bits), *args.fit_args.split()])
            big_model = os.path.join(tmp, f"{opt}.safetensors")
            big = fit(args.data, args.target, big_model,
                      ["--optimizer", opt, "--hash-bits", str(args.bits), *args.fit_args.split()])
            excess = (big["peak_rss_mb"] - floor["peak_rss_mb"]) / big["model_mb"] if big["model_mb"] else None
            bound = big["model_mb"] + BOUND_EXTRA_MB
            aim = floor["peak_rss_mb"] + 2 * big["model_mb"]  # issue 28's aim: the floor + 2 x (parameters + state)
            record = {"optimizer": opt, "floor": floor, "big": big, "bound_mb": round(bound, 1),
                      "aim_mb": round(aim, 1),
                      "excess_in_models": None if excess is None else round(excess, 2)}
            if args.predict and big["status"] == 0:
                record["predict_floor"] = predict(floor_model, args.data, os.path.join(tmp, "p.parquet"))
                record["predict"] = predict(big_model, args.data, os.path.join(tmp, "p.parquet"))
            records.append(record)
            print(f"{opt:8s} floor (2^{args.base_bits}) {floor['peak_rss_mb']:7.1f} MB | 2^{args.bits}: "
                  f"{big['peak_rss_mb']:7.1f} MB, model file {big['model_mb']:6.1f} MB, excess over the floor "
                  f"{record['excess_in_models']} x the model file; bound (model file + {BOUND_EXTRA_MB} MB) "
                  f"{bound:.1f} MB: {'within' if big['peak_rss_mb'] <= bound else 'above'}; aim (floor + 2 x the "
                  f"model file) {aim:.1f} MB: {'within' if big['peak_rss_mb'] <= aim else 'above'}"
                  + (f" | predict {record['predict']['peak_rss_mb']:.1f} MB (2^{args.base_bits}: "
                     f"{record['predict_floor']['peak_rss_mb']:.1f} MB)" if "predict" in record else "")
                  + (f" | error: {big.get('error')}" if big["status"] else ""), flush=True)
        if args.dense_rows:
            path = os.path.join(tmp, "dense.parquet")
            make_dense(path, args.dense_rows, args.dense_features)
            for opt in args.optimizers.split(","):
                rec = fit(path, "y", os.path.join(tmp, "dense.safetensors"), ["--optimizer", opt])
                records.append({"optimizer": opt, "dense": rec})
                print(f"{opt:8s} dense {args.dense_rows} x {args.dense_features}: {rec['peak_rss_mb']:7.1f} MB, "
                      f"model file {rec['model_mb']:.2f} MB" + (f" | error: {rec.get('error')}" if rec["status"]
                                                                else ""), flush=True)
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(records, stream, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
