"""Strategy selection by name: TensorFlow's own engines for one device, many GPUs, many workers, TPU."""
from __future__ import annotations

import tensorflow as tf

from official.autodeeplab.errors import UserInputError

STRATEGIES = ('default', 'one_device', 'mirrored', 'multi_worker', 'tpu')


def get_strategy(name: str = 'default', tpu_address: str = '') -> tf.distribute.Strategy:
  """default: no distribution; one_device: first GPU or the CPU; mirrored: all local GPUs (sync
  all-reduce); multi_worker: MultiWorkerMirroredStrategy from TF_CONFIG; tpu: TPUStrategy."""
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'one_device':
    gpus = tf.config.list_logical_devices('GPU')
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else '/cpu:0')
  if name == 'mirrored':
    return tf.distribute.MirroredStrategy()
  if name == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == 'tpu':
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise UserInputError(f'--strategy={name}: expected one of {", ".join(STRATEGIES)}')
