"""The tiny search shared by the search tests: a 3-layer, F=2 supernet and two 2-image halves."""
import keras

from official.autodeeplab.data import input_pipeline
from official.autodeeplab.data.converters import synthetic
from official.autodeeplab.training import configs
from official.autodeeplab.training import experiment
from official.autodeeplab.training import loop
from official.autodeeplab.training import search_task
from official.autodeeplab.utils import runtime


def tiny_task(total_steps=4, arch_start_step=1, **config):
  keras.utils.set_random_seed(0)  # the Keras-initialised stem and heads
  config = experiment.SearchConfig(total_steps=total_steps, arch_start_step=arch_start_step,
                                   **config)
  return search_task.SearchTask(
      experiment.Experiment.search(config),
      lambda: configs.build_supernet(3, num_layers=3, filter_multiplier=2),
      runtime=runtime.resolve('search', crop_size=33))


def datasets(seed=0):
  images, labels = synthetic.arrays(4, 40, 40, 3, seed)
  return (input_pipeline.from_arrays(images[:2], labels[:2], 2, 33, seed=1),
          input_pipeline.from_arrays(images[2:], labels[2:], 2, 33, seed=2))


def run(task, a, b, num_steps, workdir, settings=experiment.LoopSettings(), log=print,
        half_sizes=None):
  """The search loop on the given halves (batch 2)."""
  task.settings = settings
  task.set_inputs(a, b, 2, half_sizes)
  return loop.run(task, workdir, num_steps, log=log)
