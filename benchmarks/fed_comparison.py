"""Federated comparison (issue 17): FedAvg, FedProx and FedGen on Dirichlet label splits of Fashion-MNIST.

    python -m benchmarks.fed_comparison [--strategies fedavg,fedprox,fedgen] [--alphas 0.1,0.5]
        [--seeds 0,1,2] [--clients 20] [--sample 10] [--rounds R] [--limit N] [--arch cnn-xs]
        [--local-epochs E] [--threads 1] [--out DIR] [--work DIR] [--table-only]

Each run is one `edgekd.federate.run.federate` (Flower's simulation engine, one virtual SuperNode per
client) and writes `<out>/runs/alpha<A>/<strategy>/seed<k>.json` atomically once it finishes: the
config, the accuracy on the test split after every round, the bytes sent each round (server to the
sampled clients, and back) and the wall time. A rerun skips the runs that have a record (one from other
settings is refused, not mixed in) and resumes an interrupted run from its last round (the per-round
state lives in `--work`). Runs go alpha by alpha (0.1 first: the issue's goal is about it), then seed,
then strategy, so an interrupted comparison has whole seeds. `<out>/results.md` holds the table (final
accuracy mean ± sample std over seeds, bytes per round) and `<out>/alpha<A>.svg` the mean accuracy per
round of each strategy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.kd_comparison import write_json

RESULTS = Path(__file__).parent / "results" / "fed_comparison"
SETTINGS = ("clients", "sample", "rounds", "limit", "arch", "local_epochs", "data")


def record_path(out: Path, alpha: float, strategy: str, seed: int) -> Path:
    return out / "runs" / f"alpha{alpha:g}" / strategy / f"seed{seed}.json"


def run_one(args: argparse.Namespace, alpha: float, strategy: str, seed: int) -> dict[str, Any]:
    from edgekd.federate.config import FederationConfig
    from edgekd.federate.run import federate
    from edgekd.federate.server import state_file

    cfg = FederationConfig(
        strategy=strategy,
        data=args.data,
        arch=args.arch,
        clients=args.clients,
        sample=args.sample,
        rounds=args.rounds,
        alpha=alpha,
        seed=seed,
        limit=args.limit,
        local_epochs=args.local_epochs,
    )
    work = args.work / f"alpha{alpha:g}-{strategy}-seed{seed}"
    start = time.perf_counter()
    result = federate(cfg, work, resume=state_file(work).is_file(), threads=args.threads)
    return {
        "settings": {k: getattr(args, k) for k in SETTINGS},
        "config": cfg.model_dump(mode="json"),
        "history": result.history,
        "final_test_acc": result.test_accuracy,
        "seconds": time.perf_counter() - start,
        "threads": args.threads,
    }


def load_records(out: Path, args: argparse.Namespace) -> dict[tuple[float, str], list[dict[str, Any]]]:
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for alpha in args.alphas:
        for strategy in args.strategies:
            for seed in args.seeds:
                path = record_path(out, alpha, strategy, seed)
                if path.is_file():
                    groups.setdefault((alpha, strategy), []).append(json.loads(path.read_text()))
    return groups


def write_table(out: Path, args: argparse.Namespace) -> str:
    from edgekd.report.federated import accuracy_plot, final_table

    groups = load_records(out, args)
    histories = {f"{s} α={a:g}": [r["history"] for r in runs] for (a, s), runs in groups.items()}
    text = ["# Federated comparison\n", "Settings: " + json.dumps({k: getattr(args, k) for k in SETTINGS}), ""]
    text.append(final_table(histories))
    for alpha in args.alphas:
        mean_curves: dict[str, list[dict[str, float]]] = {}
        for (a, strategy), runs in groups.items():
            if a != alpha:
                continue
            rounds = min(len(r["history"]) for r in runs)
            mean_curves[f"{strategy} (n={len(runs)})"] = [
                {"round": i + 1, "test_acc": statistics.mean(r["history"][i]["test_acc"] for r in runs)}
                for i in range(rounds)
            ]
        if mean_curves:
            svg = out / f"alpha{alpha:g}.svg"
            svg.write_text(accuracy_plot(mean_curves))
            text.append(f"\n![mean test accuracy per round, Dirichlet({alpha:g})]({svg.name})\n")
    body = "\n".join(text)
    (out / "results.md").write_text(body)
    return body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="fedavg,fedprox,fedgen")
    parser.add_argument("--alphas", default="0.1,0.5")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--sample", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--limit", type=int, default=6000)
    parser.add_argument("--arch", default="cnn-xs")
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgekd-fed-work")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    args.alphas = [float(a) for a in args.alphas.split(",")]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if not args.table_only:
        import torch

        torch.set_num_threads(args.threads)
        for alpha in args.alphas:
            for seed in args.seeds:
                for strategy in args.strategies:
                    path = record_path(args.out, alpha, strategy, seed)
                    if path.is_file():
                        settings = json.loads(path.read_text())["settings"]
                        if settings != {k: getattr(args, k) for k in SETTINGS}:
                            raise SystemExit(f"{path} was made with other settings {settings}; use another --out")
                        continue
                    record = run_one(args, alpha, strategy, seed)
                    write_json(path, record)
                    acc, seconds = record["final_test_acc"], record["seconds"]
                    print(f"{path}: final test acc {acc:.4f}, {seconds:.0f} s", flush=True)
                    write_table(args.out, args)
    print(write_table(args.out, args))


if __name__ == "__main__":
    main()
