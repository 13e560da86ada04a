"""The runner that executes on a device (over ssh, or under qemu): numpy + onnxruntime only.

    python -m edgec.runtime.device bench MODEL --config job.json --out result.json [--inputs feed.npz]
    python -m edgec.runtime.device run   MODEL --inputs feed.npz --out outputs.npz [--config job.json]
    python -m edgec.runtime.device tune  TUNING --teacher ORIGINAL --inputs data.npz --config job.json --out result.json

`job.json` holds the SessionConfig fields and the measurement settings (warmup, runs, max_seconds, dims); for
`tune`, the zeroth-order job (`runtime.zo.job`): the data stays on the device, only the tuned affines come back.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from edgec.runtime.bench import benchmark
from edgec.runtime.session import SessionConfig, create_session

CONFIG_FIELDS = ("providers", "provider_options", "fallback", "threads", "graph_optimization")


def config_from_job(job: dict) -> SessionConfig:
    values = {k: job[k] for k in CONFIG_FIELDS if k in job}
    if "providers" in values:
        values["providers"] = tuple(values["providers"])
    return SessionConfig(**values)


def job_from_config(config: SessionConfig, **settings) -> dict:
    job = {k: getattr(config, k) for k in CONFIG_FIELDS}
    job["providers"] = list(job["providers"])
    job.update(settings)
    return job


def _load_feed(path: str | None) -> dict[str, np.ndarray] | None:
    if not path:
        return None
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgec.runtime.device")
    parser.add_argument("mode", choices=["bench", "run", "tune"])
    parser.add_argument("model")
    parser.add_argument("--config")
    parser.add_argument("--inputs")
    parser.add_argument("--out", required=True)
    parser.add_argument("--teacher")
    args = parser.parse_args(argv)
    job = {}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            job = json.load(f)
    if args.mode == "tune":
        from edgec.runtime.zo.job import ZOJob, run_job

        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(run_job(ZOJob.from_json(job), args.model, args.teacher, args.inputs).to_json(), f)
        return 0
    config = config_from_job(job)
    feed = _load_feed(args.inputs)
    if args.mode == "bench":
        result = benchmark(args.model, config, feed, job.get("dims"), job.get("warmup", 10), job.get("runs", 50),
                           job.get("max_seconds", 30.0), job.get("seed", 0), job.get("placement", True))
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result.as_dict(), f)
    else:
        session = create_session(args.model, config)
        names = [o.name for o in session.get_outputs()]
        np.savez(args.out, **dict(zip(names, session.run(names, feed), strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
