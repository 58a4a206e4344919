"""The tiny search shared by the search tests: a 3-layer, F=2 supernet and two 2-image halves."""
import keras

from official.autodeeplab.data import input_pipeline
from official.autodeeplab.data.converters import synthetic
from official.autodeeplab.training import search_settings
from official.autodeeplab.training import search_task


def tiny_task(total_steps=4, arch_start_step=1, **config):
  keras.utils.set_random_seed(0)  # the Keras-initialised stem and heads
  config = search_settings.SearchConfig(total_steps=total_steps, arch_start_step=arch_start_step,
                                        **config)
  return search_task.SearchTask(
      lambda: search_task.build_supernet(3, num_layers=3, filter_multiplier=2), config)


def datasets(seed=0):
  images, labels = synthetic.arrays(4, 40, 40, 3, seed)
  return (input_pipeline.from_arrays(images[:2], labels[:2], 2, 33, seed=1),
          input_pipeline.from_arrays(images[2:], labels[2:], 2, 33, seed=2))
