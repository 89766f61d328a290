"""A latency predictor for one target: estimates a candidate's p50 latency without building it.

How the per-layer latency table is built (the choice, and why). Measuring each layer configuration as
a one-operator model would cost one benchmark process (about a second of start-up) per configuration,
and at batch 1 a small layer takes a few microseconds while a session call costs tens: summing such
measurements mostly sums the overhead. So, as in HELP and nn-Meter's fitted kernel models, a few
"probe" candidates of the space are measured whole (each with THE timing loop, in its own process, and
cached in the store like any candidate), and a per-layer cost model is fitted to them:

    latency = per-call overhead + sum over layers of (a[kind] + b[kind] * MACs + c[kind] * elements)

where kind is conv, pointwise, depthwise, linear, pool or eltwise (`edgekd.select.layers`, which folds
batch norm and fused activations as the runtimes do), MACs its multiply-accumulates with channel counts
rounded up to the runtime's vector width (not the image's channels at the first convolution), and
elements the activation elements it reads and writes.
The vector width matters: ONNX Runtime on an AVX2 CPU computes convolutions in blocks of 8 channels,
so 12 channels cost what 16 do; it is not configured but chosen per target, among 1, 4, 8 and 16, by
the leave-one-out error over the probes. Padding is not always paid in full: on an AVX-512 CPU at batch
8, both runtimes ran the edge96 ResNets of 8-channel stages in 42-52% of the time of their 16-channel
twins, where blocks of 16 price their convolutions alike. So the fit also tries the padding MACs (the
padded count less the real one, over every layer) as a feature with a cost per MAC of its own, and
keeps that form where its leave-one-out error is the lower (`own_padding`). Likewise the weights a layer
reads per call (its MACs over its output positions: what a layer over few positions and many channels,
such as a ResNet's last stage at batch 1, is bound by) can get one cost per weight, every kind alike; that
form is kept only where it cuts the leave-one-out error by a tenth (`fit_info["weights_priced"]`). The
coefficients are non-negative (a layer never saves time) and fitted to relative error, the quantity the
MAPE goal is about. The per-layer table is the fitted cost of every distinct layer configuration of the
space; a prediction is the overhead plus the table's entries for the candidate's layers.

Eleven whole-model latencies cannot pin down ~18 coefficients, so `fit_kernels` does what nn-Meter does
with kernel-level data: each probe is run once under the runtime's own profiler (`edgekd.select.kernels`:
ONNX Runtime's per-node trace, OpenVINO's performance counters), its nodes are matched to its layers, and
each kind's cost model is fitted on the hundreds of per-node times (a per-probe factor absorbs the load
of the moment each probe was profiled at). Profiling inflates small calls, so those times give only the
split: the model is then calibrated to the probes' unprofiled medians, with an overhead, one scale for
the per-node constants and one per kind for the size terms (still a cost linear in the same features,
so prediction, table and file format are unchanged). The whole-model fit stays: it is used when the
runtime gives no per-node times, or (by default) when its leave-one-out error over the probes is the
lower, and `fit_info["method"]` says which was used. The accuracy suites (`benchmarks.predictor_accuracy`,
`benchmarks.predictor_yardstick`: nn-Meter's share within +-10%, RMSE, Kendall's tau) report the error on
held-out candidates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd._io import write_json
from edgekd.errors import UserError
from edgekd.select.layers import Layer, LayerKind, model_layers

if TYPE_CHECKING:
    from edgekd.bench.protocol import TimingConfig
    from edgekd.config import TargetProfile
    from edgekd.select.kernels import Matched, NodeTime
    from edgekd.select.space import Candidate
    from edgekd.store import Store

FORMAT = "edgekd-latency-predictor/1"
VECTOR_WIDTHS = (1, 4, 8, 16)
WEIGHTS_GAIN = 0.9  # the whole-model fit prices weights only where that cuts its leave-one-out error to this
_MAC_KINDS = (LayerKind.CONV, LayerKind.POINTWISE, LayerKind.DEPTHWISE, LayerKind.LINEAR)
FEATURES: tuple[str, ...] = (
    "overhead",
    *(f"{k.value}.count" for k in LayerKind),
    *(f"{k.value}.macs" for k in _MAC_KINDS),
    *(f"{k.value}.elements" for k in LayerKind),
    *(f"{k.value}.weights" for k in _MAC_KINDS),
    "padding.macs",
)
_INDEX = {name: i for i, name in enumerate(FEATURES)}
# Weights read per call (MACs / output positions): what a layer over few positions and many channels is
# bound by. The per-node fit prices them per kind; the whole-model fit, with a dozen totals, at most with
# one cost for every kind, and only where that lowers its leave-one-out error.
_WEIGHTS = np.array([name.endswith(".weights") for name in FEATURES])
_WEIGHT_COLUMNS = np.flatnonzero(_WEIGHTS)
# The calibration's parts: the per-node constants (count terms) of every kind together, since profiling
# adds about the same to every node; and each kind's size terms (MACs, elements) on their own.
_PART_NAMES = ("per_node", *(f"{k.value}.size" for k in LayerKind))
_PARTS = np.array(
    [
        [name.endswith(".count")] + [name.startswith(f"{k.value}.") and not name.endswith(".count") for k in LayerKind]
        for name in FEATURES
    ],
    dtype=np.float64,
)


def padded_macs(layer: Layer, vector: int) -> int:
    """MACs with channel counts rounded up to `vector`. Input channels stay as they are where the runtime
    does not block them: one per group (depthwise), and the first convolution's, which reads the image
    (3 channels) in plain N x C x H x W and writes the blocked layout (ONNX Runtime's NCHWc and
    OpenVINO's first-convolution kernels alike); padding those 3 to 16 would cost an RGB stem 5x."""
    unblocked = layer.cin_per_group <= 1 or layer.first
    cin = layer.cin_per_group if unblocked else -(-layer.cin_per_group // vector) * vector
    return layer.positions * cin * (-(-layer.cout // vector) * vector)


def layer_features(layer: Layer, vector: int = 1, own_padding: bool = False) -> np.ndarray:
    """The layer's row of the cost model: one count, its (padded) MACs, its elements. With `own_padding`,
    the layer's MACs are its real ones and what padding to `vector` adds goes to `padding.macs`."""
    row = np.zeros(len(FEATURES))
    row[_INDEX[f"{layer.kind.value}.count"]] = 1.0
    if layer.kind in _MAC_KINDS:
        macs = padded_macs(layer, vector)
        if own_padding:
            real = padded_macs(layer, 1)
            row[_INDEX[f"{layer.kind.value}.macs"]] = real
            row[_INDEX["padding.macs"]] = macs - real
        else:
            row[_INDEX[f"{layer.kind.value}.macs"]] = macs
        spatial = prod(layer.out_shape[1:]) if layer.kind is not LayerKind.LINEAR else prod(layer.out_shape[:-1])
        row[_INDEX[f"{layer.kind.value}.weights"]] = macs / max(1, spatial)
    row[_INDEX[f"{layer.kind.value}.elements"]] = layer.elements
    return row


def candidate_layers(candidate: Candidate) -> list[Layer]:
    from edgekd.models import build_model
    from edgekd.select.space import one_thread

    with one_thread():
        return model_layers(build_model(candidate.spec), candidate.input_shape)


def choose_probes(candidates: Sequence[Candidate], n: int) -> list[Candidate]:
    """About `n` candidates spread over the space to measure and fit on: each family in proportion to its
    size (at least two), evenly over its FLOPs order, smallest and largest included (no extrapolation)."""
    families: dict[str, list[Candidate]] = {}
    for c in candidates:
        families.setdefault(c.spec.family, []).append(c)
    picks: list[Candidate] = []
    for members in families.values():
        share = max(2, round(n * len(members) / max(1, len(candidates))))
        ordered = sorted(members, key=lambda c: (c.flops, c.key))
        index = np.unique(np.linspace(0, len(ordered) - 1, min(share, len(ordered))).round().astype(int))
        picks += [ordered[i] for i in index]
    return picks


class LatencyPredictor:
    """Fitted per-layer costs for one target; `predict` sums them over a candidate's layers."""

    def __init__(
        self,
        coef: Mapping[str, float],
        vector: int = 1,
        target: Mapping[str, Any] | None = None,
        fit_info: Mapping[str, Any] | None = None,
        own_padding: bool = False,
    ) -> None:
        unknown = set(coef) - set(FEATURES)
        if unknown:
            raise UserError(f"latency predictor: unknown coefficient(s) {sorted(unknown)}; fit it again")
        self.coef = np.array([float(coef.get(name, 0.0)) for name in FEATURES])
        self.vector = int(vector)
        self.own_padding = bool(own_padding)
        self.target = dict(target or {})
        self.fit_info = dict(fit_info or {})
        self._layers: dict[str, list[Layer]] = {}

    # ---- fitting ---------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        candidates_or_probes: Sequence[Candidate],
        profile: TargetProfile,
        workdir: Path,
        store: Store | Path,
        timing: TimingConfig | None = None,
        *,
        repeats: int = 1,
    ) -> LatencyPredictor:
        """Measure the probes (cached in the store, like any candidate) and fit the per-layer costs."""
        from edgekd.runtimes import get_runtime
        from edgekd.select.latency import measure_candidate, target_fields

        measured = {
            c.key: measure_candidate(c, profile, workdir, store, timing, repeats=repeats).p50_ms
            for c in candidates_or_probes
        }
        target = {"name": profile.name, **target_fields(profile, get_runtime(profile.runtime).version())}
        return cls.fit_measured(candidates_or_probes, measured, target)

    @classmethod
    def fit_measured(
        cls, candidates: Sequence[Candidate], measured: Mapping[str, float], target: Mapping[str, Any] | None = None
    ) -> LatencyPredictor:
        """Fit to latencies already measured (ms, by candidate key); picks the vector width, and whether
        padding MACs get a cost of their own, by the leave-one-out error over the probes."""
        probes = [c for c in candidates if c.key in measured]
        if len(probes) < 2:
            raise UserError(f"latency predictor: need at least 2 measured probes, got {len(probes)}")
        y = np.array([float(measured[c.key]) for c in probes])
        if not np.all(y > 0):
            raise UserError("latency predictor: measured latencies must be positive numbers of ms")
        predictor = cls({}, 1, target)
        layers = [predictor._layers_of(c) for c in probes]
        forms = [
            (v, own, weights)
            for weights in (False, True)
            for own in (False, True)
            for v in VECTOR_WIDTHS
            if not (own and v == 1)
        ]
        sums = {(v, own): np.stack([_sum_features(ls, v, own) for ls in layers]) for v, own, _ in forms}
        features = {f: _whole_model_rows(sums[f[:2]], f[2]) for f in forms}
        loo = {f: _loo_mape(x, y) for f, x in features.items()}
        # ties: blocked padding, narrower vector; pricing the weights must earn its place: it is chosen
        # only where it lowers the leave-one-out error by a tenth (a 12th cost for a dozen probes)
        plain, priced = (
            min((f for f in forms if f[2] is w), key=lambda f: (loo[f], f[1], f[0])) for w in (False, True)
        )
        best = priced if loo[priced] < WEIGHTS_GAIN * loo[plain] else plain
        predictor.vector, predictor.own_padding, weights = best
        x = features[best]
        predictor.coef = _relative_nnls(x, y)
        predictor.coef[_WEIGHTS] = predictor.coef[_WEIGHT_COLUMNS[0]]  # one cost per weight, every kind
        predictor.fit_info = {
            "probes": {c.arch: float(v) for c, v in zip(probes, y, strict=True)},
            "fit_mape": _mape(x @ predictor.coef, y),
            "loo_mape": loo[best],
            "loo_mape_by_vector": {_form_name(*f): e for f, e in loo.items()},
            "weights_priced": weights,
            "method": "whole-model",
        }
        return predictor

    @classmethod
    def fit_kernels(
        cls,
        candidates: Sequence[Candidate],
        measured: Mapping[str, float],
        nodes: Mapping[str, Sequence[NodeTime]],
        target: Mapping[str, Any] | None = None,
        *,
        choose: bool = True,
    ) -> LatencyPredictor:
        """Fit each kind's cost on the probes' per-node times (`edgekd.select.kernels`), then calibrate to
        the unprofiled whole-model latencies: predicted = overhead + per-node scale * the layers' constant
        costs + each kind's scale * its layers' size costs. Without per-node times for at least 2 probes,
        the whole-model fit (`fit_measured`); with `choose`, also where that fit's leave-one-out error over
        the probes is the lower. `fit_info["method"]` says which was used."""
        from edgekd.select.kernels import match

        probes = [c for c in candidates if c.key in measured and nodes.get(c.key)]
        if len(probes) < 2:
            fallback = cls.fit_measured(candidates, measured, target)
            fallback.fit_info["method"] = "whole-model (no per-node times)"
            return fallback
        predictor = cls({}, 1, target)
        matched = [match(predictor._layers_of(c), nodes[c.key]) for c in probes]
        fits = {v: _fit_kernel_costs(matched, v) for v in VECTOR_WIDTHS}
        predictor.vector = min(VECTOR_WIDTHS, key=lambda v: (fits[v][1], v))
        kernel = fits[predictor.vector][0]
        y = np.array([float(measured[c.key]) for c in probes])
        x = np.stack([_sum_features(predictor._layers_of(c), predictor.vector) for c in probes])
        ok = _consistent(y, _calibrated(kernel, _calibrate(kernel, x, y), x))
        scales = _calibrate(kernel, x[ok], y[ok])
        predictor.coef = kernel * (_PARTS @ scales[1:])
        predictor.coef[_INDEX["overhead"]] = scales[0]
        fitted = np.array([predictor.predict(c) for c in probes])
        loo = _loo_calibrated(kernel, x[ok], y[ok])
        if choose:
            whole = cls.fit_measured(candidates, measured, target)
            whole_loo = float(whole.fit_info["loo_mape"])
            if whole_loo < loo:
                whole.fit_info["method"] = "whole-model (lower leave-one-out error than the kernel-level fit)"
                whole.fit_info["kernel_loo_mape"] = loo
                return whole
        predictor.fit_info = {
            "method": "kernel",
            "loo_mape": loo,
            "probes": {c.arch: float(v) for c, v in zip(probes, y, strict=True)},
            "fit_mape": _mape(fitted, y),
            "inconsistent_probes": [c.arch for c, good in zip(probes, ok, strict=True) if not good],
            "nodes": sum(len(nodes[c.key]) for c in probes),
            "pairs": sum(len(m.pairs) for m in matched),
            "unmatched_share": float(np.mean([m.unmatched_ms / max(m.total_ms, 1e-12) for m in matched])),
            "calibration": dict(zip(("overhead_ms", *_PART_NAMES), (float(v) for v in scales), strict=True)),
            "kernel_wsse_by_vector": {str(v): f[1] for v, f in fits.items()},
        }
        return predictor

    # ---- predicting ------------------------------------------------------------------------------

    def predict(self, candidate: Candidate) -> float:
        """Estimated p50 latency (ms) of `candidate` on the target the predictor was fitted for."""
        return float(_sum_features(self._layers_of(candidate), self.vector, self.own_padding) @ self.coef)

    def layer_ms(self, layer: Layer) -> float:
        """One layer's entry in the per-layer table (ms); the per-call overhead is not in it."""
        return float(layer_features(layer, self.vector, self.own_padding) @ self.coef)

    def overhead_ms(self) -> float:
        return float(self.coef[_INDEX["overhead"]])

    def table(self, candidates: Iterable[Candidate]) -> list[dict[str, Any]]:
        """The per-layer latency table of `candidates`: every distinct layer configuration and its cost."""
        return self._table(layer for candidate in candidates for layer in self._layers_of(candidate))

    def _table(self, layers: Iterable[Layer]) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for layer in layers:
            rows.setdefault(
                layer.config,
                {
                    "kind": layer.kind.value,
                    "config": layer.config,
                    "macs": layer.macs,
                    "elements": layer.elements,
                    "ms": self.layer_ms(layer),
                },
            )
        return sorted(rows.values(), key=lambda r: (r["kind"], -r["ms"]))

    def mape(self, measured: Mapping[str, float], candidates: Iterable[Candidate] = ()) -> float:
        """Mean absolute percentage error (%) against measured p50s (ms, by candidate key) of candidates
        predicted before or given in `candidates`."""
        for candidate in candidates:
            self._layers_of(candidate)
        missing = [key for key in measured if key not in self._layers]
        if missing:
            raise UserError(f"latency predictor: no candidate for key(s) {missing[:3]}; pass them as candidates")
        predicted = [float(_sum_features(self._layers[k], self.vector, self.own_padding) @ self.coef) for k in measured]
        return _mape(np.array(predicted), np.array([float(v) for v in measured.values()]))

    # ---- files -----------------------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        """Write the predictor as JSON: the coefficients (ms per unit of each feature), and for reading,
        the per-layer table of every layer it has fitted on or predicted."""
        coef = {name: float(v) for name, v in zip(FEATURES, self.coef, strict=True)}
        table = self._table(layer for layers in self._layers.values() for layer in layers)
        write_json(
            Path(path),
            {
                "format": FORMAT,
                "target": self.target,
                "vector": self.vector,
                "own_padding": self.own_padding,
                "coef": coef,
                "fit": self.fit_info,
                "table": table,
            },
        )
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> LatencyPredictor:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"cannot read latency predictor {path} ({err}); fit one again") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{path} is not an edgekd latency predictor ({FORMAT}); fit one again")
        return cls(
            data.get("coef") or {},
            int(data.get("vector", 1)),
            data.get("target"),
            data.get("fit"),
            bool(data.get("own_padding", False)),
        )

    def _layers_of(self, candidate: Candidate) -> list[Layer]:
        if candidate.key not in self._layers:
            self._layers[candidate.key] = candidate_layers(candidate)
        return self._layers[candidate.key]


def _form_name(vector: int, own_padding: bool, weights: bool) -> str:
    """A whole-model form's name in `fit_info`: the vector width, `+padding` where padding is priced on
    its own, and `+weights` where the weights read per call are."""
    return f"{vector}{'+padding' if own_padding else ''}{'+weights' if weights else ''}"


def _whole_model_rows(x: np.ndarray, weights: bool) -> np.ndarray:
    """The whole-model fit's feature rows: without the weights read per call, or with them summed over
    every kind into one column (the first kind's; the others 0), so the fit gives them one cost."""
    rows: np.ndarray = x * ~_WEIGHTS
    if weights:
        rows[:, _WEIGHT_COLUMNS[0]] = x[:, _WEIGHTS].sum(axis=1)
    return rows


def _sum_features(layers: Sequence[Layer], vector: int, own_padding: bool = False) -> np.ndarray:
    row = sum((layer_features(layer, vector, own_padding) for layer in layers), np.zeros(len(FEATURES)))
    row[_INDEX["overhead"]] = 1.0
    return row


def _fit_kernel_costs(matched: Sequence[Matched], vector: int, rounds: int = 8) -> tuple[np.ndarray, float]:
    """Per-kind costs (count, MACs, elements) fitted to the paired nodes' times; returns the coefficients
    (overhead 0) and the weighted sum of squared errors.

    Each probe was profiled at its own moment, and on a shared machine a moment of load slows all of a
    probe's nodes alike: so each probe gets a factor (geometric mean 1) that its node times are divided
    by, fitted in turns with the costs. Only the split of a probe's time informs the costs, as intended:
    the totals come from the unprofiled measurements. Each node is weighted by 1 / its probe's total, so
    each error counts as its share of its model's latency."""
    samples = [(m_i, layer, ms) for m_i, m in enumerate(matched) for layer, ms in m.pairs]
    if not samples:
        return np.zeros(len(FEATURES)), 0.0
    probe = np.array([m_i for m_i, _, _ in samples])
    x = np.stack([layer_features(layer, vector) for _, layer, _ in samples])
    y = np.array([ms for _, _, ms in samples])
    kinds = [np.array([layer.kind is kind for _, layer, _ in samples]) for kind in LayerKind]
    totals = np.array([max(sum(ms for _, ms in m.pairs), 1e-12) for m in matched])
    factor = np.ones(len(matched))
    for _ in range(rounds):
        target, w = y / factor[probe], factor[probe] / totals[probe]
        coef = sum((_weighted_nnls(x[k], target[k], w[k]) for k in kinds if k.any()), np.zeros(len(FEATURES)))
        fitted = np.bincount(probe, weights=x @ coef, minlength=len(matched))
        factor = np.where(fitted > 0, totals / np.maximum(fitted, 1e-12), 1.0)
        factor /= np.exp(np.mean(np.log(factor)))
    wsse = float(np.sum((factor[probe] / totals[probe] * (x @ coef - y / factor[probe])) ** 2))
    return coef, wsse


def _consistent(measured: np.ndarray, predicted: np.ndarray, limit: float = 2.0) -> np.ndarray:
    """Probes not measured at more than `limit` times what the calibration to all of them predicts. Such
    a probe (a stall in the measurement, not in the model: a stall only adds time) would pull the
    calibration; it is left out of it (and said)."""
    ok = measured <= limit * predicted
    return ok if ok.sum() >= 3 else np.ones(len(measured), dtype=bool)


def _calibrated(kernel: np.ndarray, scales: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The calibrated predictions of the rows `x`."""
    return scales[0] + x @ (kernel * (_PARTS @ scales[1:]))  # type: ignore[no-any-return]


def _calibrate(kernel: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The overhead and one scale per calibration part, fitted to the whole-model latencies `y` of the
    probes (feature rows `x`) by relative error: y = overhead + sum over parts of scale * part's cost."""
    parts = np.stack([x @ (kernel * _PARTS[:, j]) for j in range(_PARTS.shape[1])], axis=1)
    return _relative_nnls(np.concatenate([np.ones((len(y), 1)), parts], axis=1), y)


def _loo_calibrated(kernel: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out MAPE (%) of the calibration: each probe predicted by a calibration to the others."""
    if len(y) < 3:
        return float("inf")
    rest = ~np.eye(len(y), dtype=bool)
    predicted = []
    for i in range(len(y)):
        scales = _calibrate(kernel, x[rest[i]], y[rest[i]])
        predicted.append(float(_calibrated(kernel, scales, x[i])))
    return _mape(np.array(predicted), y)


def _weighted_nnls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising sum((w * (x @ c - y))^2)."""
    from scipy.optimize import nnls

    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0  # a feature no sample has: its coefficient stays 0
    coef, _ = nnls((x / scale) * w[:, None], y * w)
    return coef / scale  # type: ignore[no-any-return]


def _relative_nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising the squared relative error sum((x @ c - y) / y)^2."""
    return _weighted_nnls(x, y, 1.0 / y)


def _loo_mape(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out MAPE (%) of the fit: each probe predicted by a fit to the others."""
    if len(y) < 3:
        return _mape(x @ _relative_nnls(x, y), y)
    rest = ~np.eye(len(y), dtype=bool)
    predicted = [x[i] @ _relative_nnls(x[rest[i]], y[rest[i]]) for i in range(len(y))]
    return _mape(np.array(predicted), y)


def _mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - measured) / measured) * 100.0)
