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
the leave-one-out error over the probes. The coefficients are non-negative (a layer never saves time)
and fitted to relative error, the quantity the MAPE goal is about. The per-layer table is the fitted
cost of every distinct layer configuration of the space; a prediction is the overhead plus the table's
entries for the candidate's layers. The accuracy suites (`benchmarks.predictor_accuracy`,
`benchmarks.predictor_yardstick`: nn-Meter's share within +-10%, RMSE, Kendall's tau) report the error on
held-out candidates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd._io import write_json
from edgekd.errors import UserError
from edgekd.select.layers import Layer, LayerKind, model_layers

if TYPE_CHECKING:
    from edgekd.bench.protocol import TimingConfig
    from edgekd.config import TargetProfile
    from edgekd.select.space import Candidate
    from edgekd.store import Store

FORMAT = "edgekd-latency-predictor/1"
VECTOR_WIDTHS = (1, 4, 8, 16)
_MAC_KINDS = (LayerKind.CONV, LayerKind.POINTWISE, LayerKind.DEPTHWISE, LayerKind.LINEAR)
FEATURES: tuple[str, ...] = (
    "overhead",
    *(f"{k.value}.count" for k in LayerKind),
    *(f"{k.value}.macs" for k in _MAC_KINDS),
    *(f"{k.value}.elements" for k in LayerKind),
)
_INDEX = {name: i for i, name in enumerate(FEATURES)}


def padded_macs(layer: Layer, vector: int) -> int:
    """MACs with channel counts rounded up to `vector`. Input channels stay as they are where the runtime
    does not block them: one per group (depthwise), and the first convolution's, which reads the image
    (3 channels) in plain N x C x H x W and writes the blocked layout (ONNX Runtime's NCHWc and
    OpenVINO's first-convolution kernels alike); padding those 3 to 16 would cost an RGB stem 5x."""
    unblocked = layer.cin_per_group <= 1 or layer.first
    cin = layer.cin_per_group if unblocked else -(-layer.cin_per_group // vector) * vector
    return layer.positions * cin * (-(-layer.cout // vector) * vector)


def layer_features(layer: Layer, vector: int = 1) -> np.ndarray:
    """The layer's row of the cost model: one count, its (padded) MACs, its elements."""
    row = np.zeros(len(FEATURES))
    row[_INDEX[f"{layer.kind.value}.count"]] = 1.0
    if layer.kind in _MAC_KINDS:
        row[_INDEX[f"{layer.kind.value}.macs"]] = padded_macs(layer, vector)
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
    ) -> None:
        unknown = set(coef) - set(FEATURES)
        if unknown:
            raise UserError(f"latency predictor: unknown coefficient(s) {sorted(unknown)}; fit it again")
        self.coef = np.array([float(coef.get(name, 0.0)) for name in FEATURES])
        self.vector = int(vector)
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
        """Fit to latencies already measured (ms, by candidate key); picks the vector width too."""
        probes = [c for c in candidates if c.key in measured]
        if len(probes) < 2:
            raise UserError(f"latency predictor: need at least 2 measured probes, got {len(probes)}")
        y = np.array([float(measured[c.key]) for c in probes])
        if not np.all(y > 0):
            raise UserError("latency predictor: measured latencies must be positive numbers of ms")
        predictor = cls({}, 1, target)
        layers = [predictor._layers_of(c) for c in probes]
        features = {v: np.stack([_sum_features(ls, v) for ls in layers]) for v in VECTOR_WIDTHS}
        loo = {v: _loo_mape(x, y) for v, x in features.items()}
        predictor.vector = min(VECTOR_WIDTHS, key=lambda v: (loo[v], v))
        x = features[predictor.vector]
        predictor.coef = _relative_nnls(x, y)
        predictor.fit_info = {
            "probes": {c.arch: float(v) for c, v in zip(probes, y, strict=True)},
            "fit_mape": _mape(x @ predictor.coef, y),
            "loo_mape_by_vector": {str(v): e for v, e in loo.items()},
        }
        return predictor

    # ---- predicting ------------------------------------------------------------------------------

    def predict(self, candidate: Candidate) -> float:
        """Estimated p50 latency (ms) of `candidate` on the target the predictor was fitted for."""
        return float(_sum_features(self._layers_of(candidate), self.vector) @ self.coef)

    def layer_ms(self, layer: Layer) -> float:
        """One layer's entry in the per-layer table (ms); the per-call overhead is not in it."""
        return float(layer_features(layer, self.vector) @ self.coef)

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
        predicted = [float(_sum_features(self._layers[k], self.vector) @ self.coef) for k in measured]
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
        return cls(data.get("coef") or {}, int(data.get("vector", 1)), data.get("target"), data.get("fit"))

    def _layers_of(self, candidate: Candidate) -> list[Layer]:
        if candidate.key not in self._layers:
            self._layers[candidate.key] = candidate_layers(candidate)
        return self._layers[candidate.key]


def _sum_features(layers: Sequence[Layer], vector: int) -> np.ndarray:
    row = sum((layer_features(layer, vector) for layer in layers), np.zeros(len(FEATURES)))
    row[_INDEX["overhead"]] = 1.0
    return row


def _relative_nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising the squared relative error sum((x @ c - y) / y)^2."""
    from scipy.optimize import nnls

    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0  # a feature no probe has: its coefficient stays 0
    coef, _ = nnls((x / scale) / y[:, None], np.ones(len(y)))
    return coef / scale  # type: ignore[no-any-return]


def _loo_mape(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out MAPE (%) of the fit: each probe predicted by a fit to the others."""
    if len(y) < 3:
        return _mape(x @ _relative_nnls(x, y), y)
    rest = ~np.eye(len(y), dtype=bool)
    predicted = [x[i] @ _relative_nnls(x[rest[i]], y[rest[i]]) for i in range(len(y))]
    return _mape(np.array(predicted), y)


def _mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - measured) / measured) * 100.0)
