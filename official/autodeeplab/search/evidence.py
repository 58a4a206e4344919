"""Does the search beat random sampling of its own space? The statistics of `tools.baseline`
(pure NumPy / SciPy, no TensorFlow).

Retraining is noisy: on the proxy task one architecture's mIoU spreads over retrain seeds about
as much as architectures differ. So every architecture is retrained at S seeds, a searched
genotype is ranked by its mean over seeds among the random genotypes' means, and the uncertainty
of that percentile is a bootstrap over both sources of noise: the random genotypes (another draw
of K from the space) and the seeds (another S retrains of each architecture).

Ranking agreement (Yu et al., "Evaluating the search phase of NAS", ICLR 2020): how the
supernet's mIoU of each architecture, weights shared and never retrained, orders them against
the retrained mIoU: Kendall's tau-b and Spearman's rho.
"""
from __future__ import annotations

import numpy as np

DEFAULT_RESAMPLES = 2000


def percentile(score: float, others) -> float:
  """Share of `others` that `score` beats, in percent (ties count half)."""
  others = np.asarray(others, np.float64)
  beaten = np.sum(others < score) + 0.5 * np.sum(others == score)
  return float(100.0 * beaten / len(others))


def rank(score: float, others) -> int:
  """1 = better than every one of `others`."""
  return 1 + int(np.sum(np.asarray(others) > score))


def bootstrap_percentile(given, random, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                         level: float = 0.9) -> tuple[float, float]:
  """The `level` interval of `percentile(mean(given), means of random)` under resampling.

  Args:
    given: [S] one architecture's mIoU per seed.
    random: [K, S] the random architectures' mIoU per seed.
  Each resample draws K random architectures with replacement and, for every architecture
  (the given one too), S of its seeds with replacement; the interval is the resamples'
  (1 - level) / 2 and (1 + level) / 2 quantiles.
  """
  given, random = np.asarray(given, np.float64), np.asarray(random, np.float64)
  if random.ndim != 2 or given.shape != random.shape[1:]:
    raise ValueError(f'bootstrap_percentile: given {given.shape} and random {random.shape} '
                     'need S and [K, S] scores')
  rng = np.random.default_rng(seed)
  k, s = random.shape
  values = np.empty(resamples)
  for i in range(resamples):
    architectures = random[rng.integers(0, k, k)]
    seeds = rng.integers(0, s, (k, s))
    means = np.take_along_axis(architectures, seeds, 1).mean(1)
    values[i] = percentile(given[rng.integers(0, s, s)].mean(), means)
  low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
  return float(low), float(high)


def seed_spread(scores) -> float | None:
  """The spread of one architecture over retrain seeds: the pooled standard deviation
  (sqrt of the mean per-architecture variance, ddof 1) of [N, S] scores; None when S < 2."""
  scores = np.asarray(scores, np.float64)
  if scores.shape[1] < 2:
    return None
  return float(np.sqrt(np.mean(np.var(scores, axis=1, ddof=1))))


def ranking_agreement(supernet, retrained) -> dict:
  """{'kendall_tau', 'spearman'} of two scorings of the same architectures (None with fewer
  than two, or when either scoring is constant)."""
  from scipy import stats
  supernet, retrained = np.asarray(supernet, np.float64), np.asarray(retrained, np.float64)
  if len(supernet) < 2 or np.ptp(supernet) == 0 or np.ptp(retrained) == 0:
    return {'kendall_tau': None, 'spearman': None}
  return {'kendall_tau': float(stats.kendalltau(supernet, retrained).statistic),
          'spearman': float(stats.spearmanr(supernet, retrained).statistic)}
