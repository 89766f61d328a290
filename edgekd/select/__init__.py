"""Latency in the loop: the student search space, candidates' measured latency (cached in the store),
and, in `edgekd.select.predictor`, a latency predictor that screens a space before anything is built."""

from edgekd.select.latency import LatencyResult, lookup, measure_candidate
from edgekd.select.space import Candidate, SearchSpace, load_space

__all__ = ["Candidate", "LatencyResult", "SearchSpace", "load_space", "lookup", "measure_candidate"]
