"""A multi-worker run (`--strategy=multi_worker`: one process per machine, the cluster in
TF_CONFIG) when a machine dies, stalls or is preempted.

* TF_CONFIG is read and checked here (`read_cluster`) before the workdir lock and the strategy,
  so a malformed one, or one whose task lies outside its cluster, is one line before any worker
  waits for the others; so is a worker count other than the one the workdir was started with
  (`check_worker_count`: preempted machines come back with new addresses, so the count is what
  must match).
* A lost peer: MultiWorkerMirroredStrategy starts TensorFlow's coordination service, which sends
  heartbeats between every worker and its leader (the chief). `--peer_timeout_s` is the
  heartbeat timeout (`configure_coordination`). A worker that dies (`kill -9`, a crash, a lost
  connection) breaks its connections at once; one that stops responding (`SIGSTOP`, a hung
  machine) misses its heartbeats for that long. Either way TensorFlow aborts every pending
  collective of the others, their current step raises, and the loop turns the error into
  `PeerLost` (`lost_peer`): one line naming the lost task from TensorFlow's message (the task a
  broken connection or missed heartbeat came from; the leader for a heartbeat that went
  unanswered), the step and the last checkpoint, exit code 75 (EX_TEMPFAIL: restart the whole
  job, and it resumes). The binaries then end the process at once (`os._exit`), since
  TensorFlow's own shutdown would wait for the lost peer at its shutdown barrier. No collective
  timeout is set: the first step's collectives wait for every worker's graph building, which can
  take minutes; a process that hangs while its TensorFlow runtime still answers heartbeats is
  therefore not detected.
* Preemption and restart agree through collectives (`Agreement`): after each step every worker
  shares whether it was asked to stop (SIGTERM, Ctrl-C), so all checkpoint the same step and
  exit 143 (130); at the start every worker resumes from the chief's newest readable checkpoint
  and they compare the step. The project's own agreement rather than TensorFlow's
  PreemptionCheckpointHandler: the loop already owns the signal, the save and the exit code of
  one process, and one small all-gather per step costs nothing beside the step's gradients.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Mapping

from official.autodeeplab.errors import UserInputError

EXIT_PEER_LOST = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure; the job may be restarted
DEFAULT_PEER_TIMEOUT_S = 60
# The files that record a workdir's worker count, by job.
DESCRIPTION_FILES = {'search': 'supernet.json', 'train': 'model.json'}


@dataclasses.dataclass(frozen=True)
class Cluster:
  """TF_CONFIG, checked: the jobs' addresses and this process's task."""
  jobs: dict[str, list[str]]
  task_type: str
  task_id: int

  @property
  def num_workers(self) -> int:
    """Processes that train (the chief and the workers)."""
    return sum(len(self.jobs.get(job, ())) for job in ('chief', 'worker'))

  def name(self, task_type: str, task_id: int) -> str:
    """'worker 1 at 127.0.0.1:2223'."""
    addresses = self.jobs.get(task_type, [])
    where = f' at {addresses[task_id]}' if task_id < len(addresses) else ''
    return f'{task_type} {task_id}{where}'

  @property
  def leader(self) -> tuple[str, int]:
    """The coordination service's leader (TensorFlow's choice: the chief, else worker 0)."""
    return ('chief', 0) if self.jobs.get('chief') else ('worker', 0)


def read_cluster(environ: Mapping[str, str] | None = None) -> Cluster | None:
  """TF_CONFIG as a `Cluster` (None when unset: one local worker); a one-line error naming it
  when it does not parse or its task is not in its cluster."""
  environ = os.environ if environ is None else environ
  text = environ.get('TF_CONFIG')
  if not text:
    return None
  try:
    config = json.loads(text)
  except ValueError as e:
    raise UserInputError(f'TF_CONFIG: not JSON ({e})') from None
  if not isinstance(config, dict) or not isinstance(config.get('cluster'), dict) or (
      not isinstance(config.get('task'), dict)):
    raise UserInputError('TF_CONFIG: expected {"cluster": {"worker": ["host:port", ...]}, '
                         '"task": {"type": "worker", "index": N}}')
  jobs = config['cluster']
  if not all(isinstance(v, list) and all(isinstance(a, str) and a for a in v)
             for v in jobs.values()) or not any(jobs.get(j) for j in ('chief', 'worker')):
    raise UserInputError(f'TF_CONFIG: cluster {json.dumps(jobs)}: expected lists of "host:port" '
                         'under "worker" (and optionally "chief")')
  task_type, index = config['task'].get('type'), config['task'].get('index', 0)
  if task_type not in jobs:
    raise UserInputError(f'TF_CONFIG: task type {task_type!r} is not in the cluster (its jobs: '
                         f'{", ".join(sorted(jobs))})')
  if not isinstance(index, int) or isinstance(index, bool) or not (
      0 <= index < len(jobs[task_type])):
    raise UserInputError(f'TF_CONFIG: task index {index!r} outside the cluster\'s '
                         f'{len(jobs[task_type])} {task_type} task(s)')
  return Cluster({job: list(addresses) for job, addresses in jobs.items()}, task_type, index)


def from_strategy(strategy) -> Cluster | None:
  """The cluster of a multi-worker strategy with more than one worker (else None)."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not getattr(resolver, 'task_type', None):
    return None
  jobs = {job: list(addresses) for job, addresses in resolver.cluster_spec().as_dict().items()}
  cluster = Cluster(jobs, resolver.task_type, int(resolver.task_id or 0))
  return cluster if cluster.num_workers > 1 else None


def check_peer_timeout(seconds: float, flag: str = '--peer_timeout_s') -> None:
  if not seconds > 0:
    raise UserInputError(f'{flag}={seconds}: must be positive (seconds a peer may stay silent)')


def check_worker_count(workdir: str | None, job: str, num_workers: int) -> None:
  """A workdir started with another number of workers is refused (its checkpoints are of one
  worker count; the addresses may change, the count may not)."""
  name = DESCRIPTION_FILES.get(job)
  if not workdir or name is None:
    return
  path = os.path.join(workdir, name)
  try:
    with open(path) as f:
      recorded = json.load(f).get('num_workers')
  except (OSError, ValueError, AttributeError):
    return  # absent or unreadable: the loop reports it
  if recorded is not None and recorded != num_workers:
    raise UserInputError(f'{path}: the run was started on {recorded} worker(s), this one has '
                         f'{num_workers} (TF_CONFIG); restart it on {recorded}, or use another '
                         '--workdir')


def configure_coordination(cluster: Cluster, peer_timeout_s: float) -> None:
  """TensorFlow's coordination service as MultiWorkerMirroredStrategy would start it, with the
  heartbeat timeout `peer_timeout_s` (set before the strategy, which then keeps it)."""
  from tensorflow.python.distribute import multi_worker_util
  from tensorflow.python.eager import context
  from tensorflow.python.training import server_lib
  from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
  spec = server_lib.ClusterSpec(cluster.jobs)
  context.context().configure_coordination_service(
      service_type='standalone', service_leader=multi_worker_util.coordination_leader(spec),
      heartbeat_timeout_in_ms=int(peer_timeout_s * 1000),
      shutdown_barrier_timeout_in_ms=int(peer_timeout_s * 1000),
      coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(addresses))
                        for job, addresses in cluster.jobs.items() if job in ('chief', 'worker')])


_TASK = re.compile(r'/job:(\w+)/(?:replica:\d+/)?task:(\d+)')
_PEER_SIGNS = ('Collective ops is aborted', 'unhealthy', 'Connection reset', 'Heartbeat',
               'Socket closed', 'failed to connect', 'Connection refused', 'UNAVAILABLE')


def lost_peer(error: BaseException, cluster: Cluster) -> str | None:
  """The task whose loss `error` (a TensorFlow error from a step's collectives) reports, as
  'worker 1 at host:port'; None when the error is not a lost peer's."""
  text = str(getattr(error, 'message', None) or error)
  if not any(sign in text for sign in _PEER_SIGNS):
    return None
  me = (cluster.task_type, cluster.task_id)
  for job, index in _TASK.findall(text):
    if (job, int(index)) != me:
      return cluster.name(job, int(index))
  if 'Heartbeat' in text:  # this worker's heartbeat to the leader went unanswered
    return cluster.name(*cluster.leader)
  return 'a peer'


class Agreement:
  """Values shared by every worker through one all-gather (under the strategy's collectives).

  Args:
    strategy: the run's MultiWorkerMirroredStrategy.
  """

  def __init__(self, strategy):
    import tensorflow as tf

    @tf.function
    def gather(value):
      local = strategy.run(lambda v: tf.reshape(v, [1]), args=(value,))
      return strategy.gather(local, axis=0)

    self._gather = gather

  def values(self, value: float) -> list[float]:
    """Every replica's `value` (each worker's, as many times as it has replicas)."""
    import tensorflow as tf
    return [float(v) for v in self._gather(tf.constant(float(value), tf.float32)).numpy()]
