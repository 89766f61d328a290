"""A latency predictor for one target: estimates a candidate's p50 latency without building it.

How the per-layer latency table is built (the choice, and why). Measuring each layer configuration as
a one-operator model would cost one benchmark process (about a second of start-up) per configuration,
and at batch 1 a small layer takes a few microseconds while a session call costs tens: summing such
measurements mostly sums the overhead. So, as in HELP and nn-Meter's fitted kernel models, a few
"probe" candidates of the space are measured whole (each with THE timing loop, in its own process, and
cached in the store like any candidate), and a per-layer cost model is fitted to them:

    latency = per-call overhead + sum over layers of (a[kind] + b[kind] * MACs + c[kind] * elements)

where kind is conv, pointwise, depthwise, linear, pool or eltwise (`edgekd.bench.layers`, which folds
batch norm and fused activations as the runtimes do), MACs its multiply-accumulates and elements the
activation elements it reads and writes. The coefficients are non-negative (a layer never saves time)
and fitted to relative error, the quantity the MAPE goal is about. The per-layer table is the fitted
cost of every distinct layer configuration of the space; a prediction is the overhead plus the table's
entries for the candidate's layers. The accuracy suite (`edgekd.bench.suites.predictor_accuracy`)
reports the MAPE on held-out candidates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd._io import write_json
from edgekd.bench.layers import Layer, LayerKind, model_layers
from edgekd.errors import UserError

if TYPE_CHECKING:
    from edgekd.bench.protocol import TimingConfig
    from edgekd.config import TargetProfile
    from edgekd.select.space import Candidate
    from edgekd.store import Store

FORMAT = "edgekd-latency-predictor/1"
_MAC_KINDS = (LayerKind.CONV, LayerKind.POINTWISE, LayerKind.DEPTHWISE, LayerKind.LINEAR)
FEATURES: tuple[str, ...] = (
    "overhead",
    *(f"{k.value}.count" for k in LayerKind),
    *(f"{k.value}.macs" for k in _MAC_KINDS),
    *(f"{k.value}.elements" for k in LayerKind),
)
_INDEX = {name: i for i, name in enumerate(FEATURES)}


def layer_features(layer: Layer) -> np.ndarray:
    """The layer's row of the cost model: one count, its MACs, its elements."""
    row = np.zeros(len(FEATURES))
    row[_INDEX[f"{layer.kind.value}.count"]] = 1.0
    if layer.kind in _MAC_KINDS:
        row[_INDEX[f"{layer.kind.value}.macs"]] = layer.macs
    row[_INDEX[f"{layer.kind.value}.elements"]] = layer.elements
    return row


def candidate_layers(candidate: Candidate) -> list[Layer]:
    from edgekd.models import build_model
    from edgekd.select.space import one_thread

    with one_thread():
        return model_layers(build_model(candidate.spec), candidate.input_shape)


class LatencyPredictor:
    """Fitted per-layer costs for one target; `predict` sums them over a candidate's layers."""

    def __init__(self, coef: Mapping[str, float], target: Mapping[str, Any] | None = None,
                 fit_info: Mapping[str, Any] | None = None) -> None:
        unknown = set(coef) - set(FEATURES)
        if unknown:
            raise UserError(f"latency predictor: unknown coefficient(s) {sorted(unknown)}; re-fit it")
        self.coef = np.array([float(coef.get(name, 0.0)) for name in FEATURES])
        self.target = dict(target or {})
        self.fit_info = dict(fit_info or {})
        self._layers: dict[str, list[Layer]] = {}

    # ---- fitting ---------------------------------------------------------------------------------

    @classmethod
    def fit(cls, candidates_or_probes: Sequence[Candidate], profile: TargetProfile, workdir: Path,
            store: Store | Path, timing: TimingConfig | None = None) -> LatencyPredictor:
        """Measure the probes (cached in the store, like any candidate) and fit the per-layer costs."""
        from edgekd.runtimes import get_runtime
        from edgekd.select.latency import measure_candidate, target_fields

        measured = {c.key: measure_candidate(c, profile, workdir, store, timing).p50_ms for c in candidates_or_probes}
        target = {"name": profile.name, **target_fields(profile, get_runtime(profile.runtime).version())}
        return cls.fit_measured(candidates_or_probes, measured, target)

    @classmethod
    def fit_measured(cls, candidates: Sequence[Candidate], measured: Mapping[str, float],
                     target: Mapping[str, Any] | None = None) -> LatencyPredictor:
        """Fit to latencies already measured (ms, by candidate key)."""
        probes = [c for c in candidates if c.key in measured]
        if len(probes) < 2:
            raise UserError(f"latency predictor: need at least 2 measured probes, got {len(probes)}")
        predictor = cls({}, target)
        x = np.stack([predictor._features(c) for c in probes])
        y = np.array([float(measured[c.key]) for c in probes])
        if (y <= 0).any():
            raise UserError("latency predictor: measured latencies must be positive")
        predictor.coef = _relative_nnls(x, y)
        predictor.fit_info = {"probes": [c.arch for c in probes], "fit_mape": _mape(x @ predictor.coef, y)}
        return predictor

    # ---- predicting ------------------------------------------------------------------------------

    def predict(self, candidate: Candidate) -> float:
        """Estimated p50 latency (ms) of `candidate` on the target the predictor was fitted for."""
        return float(self._features(candidate) @ self.coef)

    def layer_ms(self, layer: Layer) -> float:
        """One layer's entry in the per-layer table (ms); the per-call overhead is not in it."""
        return float(layer_features(layer) @ self.coef)

    def table(self, candidates: Iterable[Candidate]) -> list[dict[str, Any]]:
        """The per-layer latency table of `candidates`: every distinct layer configuration, its cost."""
        rows: dict[str, dict[str, Any]] = {}
        for candidate in candidates:
            for layer in self._layers_of(candidate):
                rows.setdefault(layer.config, {"kind": layer.kind.value, "config": layer.config,
                                               "macs": layer.macs, "elements": layer.elements,
                                               "ms": self.layer_ms(layer)})
        return sorted(rows.values(), key=lambda r: (r["kind"], -r["ms"]))

    def mape(self, measured: Mapping[str, float], candidates: Iterable[Candidate] = ()) -> float:
        """Mean absolute percentage error (%) against measured p50s, by candidate key. Candidates not
        predicted before are given by `candidates`."""
        for candidate in candidates:
            self._layers_of(candidate)
        missing = [key for key in measured if key not in self._layers]
        if missing:
            raise UserError(f"latency predictor: no candidate for key(s) {missing[:3]}; pass them as candidates")
        predicted = [self._predict_key(key) for key in measured]
        return _mape(np.array(predicted), np.array([float(v) for v in measured.values()]))

    # ---- files -----------------------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        coef = {name: float(v) for name, v in zip(FEATURES, self.coef, strict=True)}
        write_json(Path(path), {"format": FORMAT, "target": self.target, "coef": coef, "fit": self.fit_info})
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> LatencyPredictor:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"cannot read latency predictor {path} ({err}); fit one again") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{path} is not an edgekd latency predictor ({FORMAT}); fit one again")
        return cls(data.get("coef") or {}, data.get("target"), data.get("fit"))

    # ---- internals -------------------------------------------------------------------------------

    def _layers_of(self, candidate: Candidate) -> list[Layer]:
        if candidate.key not in self._layers:
            self._layers[candidate.key] = candidate_layers(candidate)
        return self._layers[candidate.key]

    def _features(self, candidate: Candidate) -> np.ndarray:
        return _sum_features(self._layers_of(candidate))

    def _predict_key(self, key: str) -> float:
        return float(_sum_features(self._layers[key]) @ self.coef)


def _sum_features(layers: Sequence[Layer]) -> np.ndarray:
    row = sum((layer_features(layer) for layer in layers), np.zeros(len(FEATURES)))
    row[_INDEX["overhead"]] = 1.0
    return row


def _relative_nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising the squared relative error sum(((x @ c) - y) / y)^2."""
    from scipy.optimize import nnls

    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0  # a feature no probe has: its coefficient stays 0
    a = (x / scale) / y[:, None]
    coef, _ = nnls(a, np.ones(len(y)))
    return coef / scale  # type: ignore[no-any-return]


def _mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - measured) / measured) * 100.0)
