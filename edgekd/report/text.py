"""Terminal output of single results (tables via rich)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)


def fmt_ms(value: float | None) -> str:
    """Milliseconds to the microsecond; below 0.01 ms to two significant digits, so that a small
    difference (a budget missed by 0.0002 ms) does not print as 0.000."""
    if value is None:
        return "-"
    return f"{value:.3f}" if value == 0 or abs(value) >= 0.01 else f"{value:.2g}"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def print_bench(result: dict[str, Any]) -> None:
    lat = result["latency_ms"]
    fp = result["fingerprint"]
    table = Table(title=f"{result.get('artifact', '')}", title_justify="left")
    for col in ("p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms", "throughput/s", "batch", "accuracy"):
        table.add_column(col, justify="right")
    table.add_row(
        fmt_ms(lat["p50"]),
        fmt_ms(lat["p90"]),
        fmt_ms(lat["p99"]),
        fmt_ms(lat["mean"]),
        fmt_ms(lat["std"]),
        f"{result['throughput_per_s']:.1f}",
        str(result["batch"]),
        fmt_pct(result.get("accuracy")),
    )
    out.print(table)
    out.print(
        f"{fp.get('runtime')} {fp.get('runtime_version')} {fp.get('precision')}, {fp.get('threads')} threads,"
        f" {fp.get('cpu_model')} ({fp.get('cores')} cores), {result.get('samples')} timed runs"
    )
    if result.get("accuracy_on"):
        out.print(f"accuracy on {result['accuracy_samples']} images of {result['accuracy_on']}")
    if result.get("shift"):
        print_shift(result)
    if result.get("rounds"):
        out.print(f"over rounds: {fmt_rounds(result['rounds'])}")
    if result.get("floor"):
        out.print(f"null-model floor: {fmt_rounds(result['floor'])}")


def print_shift(result: dict[str, Any]) -> None:
    """Accuracy per shifted domain next to clean accuracy, and the unnormalised mean corruption error."""
    table = Table(title="accuracy under domain shift", title_justify="left")
    for col in ("domain", "accuracy", "vs clean"):
        table.add_column(col, justify="right" if col != "domain" else "left")
    clean = result.get("accuracy")
    table.add_row("clean", fmt_pct(clean), "")
    for domain, acc in result["shift"].items():
        table.add_row(domain, fmt_pct(acc), "-" if clean is None else f"{100 * (acc - clean):+.2f} pt")
    out.print(table)
    if result.get("mean_corruption_error") is not None:
        out.print(
            f"mean corruption error {fmt_pct(result['mean_corruption_error'])} (mean of 1 - accuracy over the"
            f" corruptions; unnormalised, not ImageNet-C's mCE), clean error {fmt_pct(_error(clean))}"
        )


def _error(accuracy: float | None) -> float | None:
    return None if accuracy is None else 1.0 - accuracy


def fmt_rounds(r: dict[str, Any]) -> str:
    """Median over rounds, its CI, the spread of the rounds, how many and why they stopped."""
    return (
        f"median {fmt_ms(r['median_ms'])} ms, {100 * r['confidence']:.0f}% CI {fmt_ms(r['ci_low_ms'])}"
        f"-{fmt_ms(r['ci_high_ms'])} ms (width {fmt_pct(r['rel_width'])}), rounds {fmt_ms(r['min_ms'])}"
        f"-{fmt_ms(r['max_ms'])} ms, {r['rounds']} rounds, stopped by {r['stopped_by']}"
    )


def print_comparison(result: dict[str, Any]) -> None:
    """Models measured side by side in one run, with the null model's floor."""
    table = Table(title="side by side in interleaved rounds (ms)", title_justify="left")
    table.add_column("model", overflow="fold", min_width=20)
    for col in ("median", "95% CI", "width", "rounds min-max", "n", "stop", "acc."):
        table.add_column(col, justify="right", no_wrap=True)
    for m in [*result["models"], *result["floors"]]:
        r = m["rounds"]
        table.add_row(
            str(m["name"]),
            fmt_ms(r["median_ms"]),
            f"{fmt_ms(r['ci_low_ms'])}-{fmt_ms(r['ci_high_ms'])}",
            fmt_pct(r["rel_width"]) + ("" if r["met_target"] else " !"),
            f"{fmt_ms(r['min_ms'])}-{fmt_ms(r['max_ms'])}",
            str(r["rounds"]),
            str(r["stopped_by"]).replace("_", " "),
            fmt_pct(m.get("accuracy")),
        )
    out.print(table)
    rule = result["rule"]
    fp = result["models"][0]["fingerprint"]
    out.print(
        f"target CI width {fmt_pct(rule['rel_width'])}, time cap {rule['time_cap_s']:g} s; '!' = not reached."
        f" {fp.get('runtime')} {fp.get('runtime_version')}, {fp.get('threads')} threads, {fp.get('cpu_model')}"
    )
    for floor in result["floors"]:
        out.print(f"{floor['name']} (per-call floor, no compute): {fmt_rounds(floor['rounds'])}")
    if any(m.get("shift") for m in result["models"]):
        print_shift_side_by_side(result["models"])


def print_shift_side_by_side(models: list[dict[str, Any]]) -> None:
    """Accuracy per domain, one column per model, clean first and the mean corruption error last."""
    table = Table(title="accuracy under domain shift, side by side", title_justify="left")
    table.add_column("domain")
    for m in models:
        table.add_column(str(m["name"]), justify="right", overflow="fold")
    domains = list(dict.fromkeys(d for m in models for d in (m.get("shift") or {})))
    table.add_row("clean", *(fmt_pct(m.get("accuracy")) for m in models))
    for domain in domains:
        table.add_row(domain, *(fmt_pct((m.get("shift") or {}).get(domain)) for m in models))
    table.add_row("mean corruption error", *(fmt_pct(m.get("mean_corruption_error")) for m in models))
    out.print(table)


def print_artifact(info: dict[str, Any], out_dir: Path) -> None:
    parity = info["parity"]
    acc = info.get("accuracy") or {}
    out.print(f"built {out_dir / info['artifact']} ({info['runtime']} {info['precision']}, target {info['target']})")
    out.print(
        f"  parity vs torch: max abs diff {parity['max_abs_diff']:.2e}, top-1 agreement"
        f" {100 * parity['top1_agreement']:.2f}% on {parity['inputs']}"
    )
    if acc.get("artifact") is not None:
        out.print(
            f"  accuracy: torch {fmt_pct(acc.get('torch'))} -> onnx {fmt_pct(acc.get('onnx'))}"
            f" -> artifact {fmt_pct(acc.get('artifact'))}"
        )
    if info.get("shift"):
        print_shift_chain(info)


def print_shift_chain(info: dict[str, Any]) -> None:
    """Accuracy per domain along the export chain (torch, ONNX, artifact), clean first, then the mean
    corruption error of each stage."""
    stages = ("torch", "onnx", "artifact")
    table = Table(title="accuracy under domain shift along the export chain", title_justify="left")
    table.add_column("domain")
    for col in (*stages, "artifact vs torch"):
        table.add_column(col, justify="right")
    rows = {"clean": info.get("accuracy") or {}, **info["shift"]}
    for domain, acc in rows.items():
        reference = acc.get("torch") if acc.get("torch") is not None else acc.get("onnx")
        got = acc.get("artifact")
        delta = "-" if reference is None or got is None else f"{100 * (got - reference):+.2f} pt"
        table.add_row(domain, *(fmt_pct(acc.get(s)) for s in stages), delta)
    out.print(table)
    mce = info.get("mean_corruption_error") or {}
    if any(v is not None for v in mce.values()):
        out.print(
            "mean corruption error (unnormalised, mean of 1 - accuracy over the corruptions): "
            + ", ".join(f"{s} {fmt_pct(mce.get(s))}" for s in stages)
        )
