"""Evaluation as the benchmarks define it, and inference at full resolution.

`SegmentationMetrics` accumulates a confusion matrix (rows: ground truth, columns: prediction)
over batches, skipping pixels labelled `ignore_label` (255). From it:
  IoU_c = TP_c / (TP_c + FP_c + FN_c), mIoU = mean over classes with a defined IoU,
  pixel accuracy = sum_c TP_c / labelled pixels.
A class absent from both labels and predictions has no IoU (NaN) and is left out of the mean, as in
the Cityscapes evaluation scripts; a class predicted but never labelled has IoU 0. Under a
tf.distribute strategy each replica adds to its own copy of the matrix (an ON_READ variable) and
reading the result sums them.

`predict_probabilities` runs the model on whole images, optionally at several scales and with a
left-right flip, averaging the softmax probabilities at the input size (DeepLab's multi-scale
inference); `Evaluator` runs it over a dataset under a strategy, updating the metrics.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from official.autodeeplab.data.datasets import IGNORE_LABEL
from official.autodeeplab.errors import UserInputError

# DeepLab's multi-scale evaluation scales (with left-right flips) for the paper's MS results.
MULTI_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


class SegmentationMetrics(tf.Module):
  """Confusion matrix over batches -> mIoU, pixel accuracy, per-class IoU.

  Create it inside the strategy's scope to use it under a strategy; call `update` in the replica
  context (inside `strategy.run`, or with no strategy).

  Args:
    num_classes: evaluated classes (train ids 0..num_classes-1).
    ignore_label: label value of pixels that are not evaluated.
  """

  def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL, name='metrics'):
    super().__init__(name=name)
    if num_classes < 1:
      raise UserInputError(f'num_classes={num_classes}: must be positive')
    self.num_classes, self.ignore_label = int(num_classes), int(ignore_label)
    self.confusion = tf.Variable(
        tf.zeros([self.num_classes, self.num_classes], tf.int64), trainable=False,
        name='confusion_matrix', synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.SUM)

  def update(self, labels, predictions) -> None:
    """Adds a batch: int tensors of the same shape; `ignore_label` pixels are skipped."""
    labels = tf.convert_to_tensor(labels)
    predictions = tf.convert_to_tensor(predictions)
    if (labels.shape.is_fully_defined() and predictions.shape.is_fully_defined() and
        labels.shape != predictions.shape) or labels.shape.rank != predictions.shape.rank:
      raise UserInputError(f'SegmentationMetrics.update: labels {labels.shape} and predictions '
                           f'{predictions.shape} must have the same shape')
    labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
    predictions = tf.reshape(tf.cast(predictions, tf.int64), [-1])
    tf.debugging.assert_equal(tf.size(labels), tf.size(predictions),
                              message='SegmentationMetrics.update: labels and predictions '
                                      'must have the same shape')
    valid = tf.not_equal(labels, self.ignore_label)
    labels, predictions = tf.boolean_mask(labels, valid), tf.boolean_mask(predictions, valid)
    tf.debugging.assert_less(labels, tf.constant(self.num_classes, tf.int64),
                             message=f'labels must be in 0..{self.num_classes - 1} or '
                                     f'{self.ignore_label} (ignored)')
    tf.debugging.assert_non_negative(labels, message='labels must not be negative')
    counts = tf.math.bincount(labels * self.num_classes + predictions,
                              minlength=self.num_classes**2, maxlength=self.num_classes**2,
                              dtype=tf.int64)
    self.confusion.assign_add(tf.reshape(counts, [self.num_classes, self.num_classes]))

  def reset(self) -> None:
    self.confusion.assign(tf.zeros_like(self.confusion))

  def confusion_matrix(self) -> np.ndarray:
    """[num_classes, num_classes] int64, rows = ground truth, summed over replicas."""
    return np.asarray(self.confusion.read_value())

  def result(self) -> dict:
    """{'miou', 'pixel_accuracy', 'per_class_iou' (list, NaN for absent classes)}."""
    return scores(self.confusion_matrix())


def most_confused(confusion: np.ndarray, class_names, count: int = 5) -> list[tuple]:
  """The `count` largest off-diagonal cells of the row-normalised confusion matrix: (true class,
  predicted class, fraction of the true class's pixels), largest first."""
  confusion = np.asarray(confusion, np.float64)
  rows = confusion.sum(1, keepdims=True)
  with np.errstate(invalid='ignore', divide='ignore'):
    fractions = np.where(rows > 0, confusion / np.maximum(rows, 1), 0.0)
  np.fill_diagonal(fractions, 0.0)
  order = np.argsort(fractions, axis=None)[::-1][:count]
  pairs = [np.unravel_index(i, fractions.shape) for i in order]
  return [(class_names[t], class_names[p], float(fractions[t, p])) for t, p in pairs
          if fractions[t, p] > 0]


def scores(confusion: np.ndarray) -> dict:
  """mIoU, pixel accuracy and per-class IoU of a confusion matrix (rows: ground truth)."""
  confusion = np.asarray(confusion, np.float64)
  true_positives = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - true_positives
  with np.errstate(invalid='ignore', divide='ignore'):
    iou = np.where(union > 0, true_positives / np.maximum(union, 1), np.nan)
  total = confusion.sum()
  defined = iou[~np.isnan(iou)]
  return {'miou': float(defined.mean()) if defined.size else math.nan,
          'pixel_accuracy': float(true_positives.sum() / total) if total else math.nan,
          'per_class_iou': [float(v) for v in iou]}


def predict_probabilities(model, images: tf.Tensor, scales: Sequence[float] = (1.0,),
                          flip: bool = False) -> tf.Tensor:
  """Softmax probabilities [N, H, W, C] at the input size, averaged over scales and flips.

  At each scale the images are resized bilinearly (scale 1.0: untouched), the model's logits are
  resized back to H x W and turned into probabilities; with `flip` the left-right mirrored images
  go through the model in the same batch and their probabilities are mirrored back. The scales run
  in a `tf.while_loop`, so the graph holds one copy of the model whatever their number.
  """
  size = tf.shape(images)[1:3]
  scales_t = tf.constant(list(scales), tf.float32)

  def at_scale(scale):
    new_size = tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32)
    new_size = tf.maximum(new_size, 1)
    scaled = tf.cond(tf.reduce_all(tf.equal(new_size, size)), lambda: images,
                     lambda: tf.image.resize(images, new_size, method='bilinear'))
    batch = tf.concat([scaled, tf.reverse(scaled, axis=[2])], 0) if flip else scaled
    logits = model(batch, training=False)
    logits = tf.cond(tf.reduce_all(tf.equal(tf.shape(logits)[1:3], size)), lambda: logits,
                     lambda: tf.image.resize(logits, size, method='bilinear'))
    probabilities = tf.nn.softmax(logits)
    if flip:
      straight, mirrored = tf.split(probabilities, 2, axis=0)
      probabilities = straight + tf.reverse(mirrored, axis=[2])
    return probabilities

  if len(scales) == 1:
    total = at_scale(scales_t[0])
  else:
    total = tf.foldl(lambda acc, scale: acc + at_scale(scale), scales_t[1:],
                     initializer=at_scale(scales_t[0]))
  return total / float(len(scales) * (2 if flip else 1))


class Evaluator:
  """Runs full-resolution inference over a dataset of `input_pipeline.for_evaluation` batches.

  Args:
    model: images in [-1, 1] -> logits at the input size.
    num_classes: evaluated classes.
    scales: inference scales (DeepLab's multi-scale: `MULTI_SCALES`).
    flip: also average over left-right flips.
    strategy: tf.distribute strategy (the model should have been built in its scope).
  """

  def __init__(self, model, num_classes: int, scales: Sequence[float] = (1.0,),
               flip: bool = False, strategy: tf.distribute.Strategy | None = None,
               ignore_label: int = IGNORE_LABEL):
    self.model, self.scales, self.flip = model, tuple(float(s) for s in scales), flip
    if not self.scales or any(s <= 0 for s in self.scales):
      raise UserInputError(f'scales={",".join(map(str, scales))}: expected positive numbers')
    self.strategy = strategy or tf.distribute.get_strategy()
    with self.strategy.scope():
      self.metrics = SegmentationMetrics(num_classes, ignore_label)
    self._step = tf.function(self._distributed_step, reduce_retracing=True)

  def _distributed_step(self, batch):
    def replica_step(batch):
      probabilities = predict_probabilities(self.model, batch['image'], self.scales, self.flip)
      predictions = tf.argmax(probabilities, -1, output_type=tf.int32)
      self.metrics.update(batch['label'], predictions)
      return predictions, tf.reduce_max(probabilities, -1)
    return self.strategy.run(replica_step, args=(batch,))

  def run(self, dataset: tf.data.Dataset,
          on_batch: Callable[[dict, np.ndarray, np.ndarray], None] | None = None,
          max_batches: int | None = None) -> dict:
    """Evaluates every batch (or the first `max_batches`); returns `SegmentationMetrics.result()`
    plus `num_images`. `on_batch(batch, predictions, confidence)` gets NumPy arrays per replica
    batch (e.g. to save overlays)."""
    self.metrics.reset()
    num_images = 0
    for index, batch in enumerate(self.strategy.experimental_distribute_dataset(dataset)):
      if max_batches is not None and index >= max_batches:
        break
      predictions, confidence = self._step(batch)
      local = self.strategy.experimental_local_results
      parts = [dict(zip(batch, values)) for values in zip(*(local(v) for v in batch.values()))]
      for part, pred, conf in zip(parts, local(predictions), local(confidence)):
        num_images += int(part['image'].shape[0])
        if on_batch is not None:
          on_batch({k: v.numpy() for k, v in part.items()}, pred.numpy(), conf.numpy())
    return {**self.metrics.result(), 'num_images': num_images}
