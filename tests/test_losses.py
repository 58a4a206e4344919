"""The segmentation loss: ignored pixels, and DeepLab's hard-pixel mining."""
import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.training import losses


def pixel_losses(labels, logits):
  """NumPy cross-entropy per pixel."""
  shifted = logits - logits.max(-1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  return -np.take_along_axis(log_p, np.where(labels == 255, 0, labels)[..., None], -1)[..., 0]


RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=[2, 6, 7, 4]).astype(np.float32)
LABELS = RNG.integers(0, 4, [2, 6, 7])
LABELS[0, :2] = 255  # ignored pixels


def test_plain_mean_over_labelled_pixels_at_fraction_one():
  per_pixel = pixel_losses(LABELS, LOGITS)[LABELS != 255]
  plain = losses.segmentation_loss(LABELS, LOGITS)
  np.testing.assert_allclose(plain, per_pixel.mean(), rtol=1e-5)
  np.testing.assert_allclose(losses.segmentation_loss(LABELS, LOGITS, top_k_fraction=tf.constant(
      1.0)), plain, rtol=1e-5)
  np.testing.assert_allclose(losses.segmentation_loss(LABELS, LOGITS, num_replicas=2), plain / 2,
                             rtol=1e-5)


@pytest.mark.parametrize('fraction', [0.5, 0.2, 0.01])
def test_mean_of_the_k_hardest_labelled_pixels(fraction):
  per_pixel = np.sort(pixel_losses(LABELS, LOGITS)[LABELS != 255])[::-1]
  k = max(1, int(round(fraction * per_pixel.size)))
  np.testing.assert_allclose(losses.segmentation_loss(LABELS, LOGITS, top_k_fraction=fraction),
                             per_pixel[:k].mean(), rtol=1e-5)


def test_fraction_ramps_from_one_to_the_target():
  assert losses.top_k_fraction(5, 1.0, 100) == 1.0
  assert losses.top_k_fraction(5, 0.3, 0) == 0.3
  np.testing.assert_allclose([float(losses.top_k_fraction(s, 0.3, 100)) for s in (0, 50, 100, 500)],
                             [1.0, 0.65, 0.3, 0.3], rtol=1e-6)
