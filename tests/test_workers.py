"""Multi-worker runs when a peer is lost: TF_CONFIG and the worker count checked before any
worker waits, the lost task named from TensorFlow's own messages (as the runs in
tests/test_lost_workers.py print them), the one-line refusals of the binaries."""
import json

import pytest

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.training import workers
from tests.conftest import assert_bad_input, run_tool

CLUSTER = {'worker': ['127.0.0.1:2222', '127.0.0.1:2223', '127.0.0.1:2224']}


def _env(cluster, task_type='worker', index=0):
  return {'TF_CONFIG': json.dumps({'cluster': cluster, 'task': {'type': task_type,
                                                                'index': index}})}


def test_tf_config_is_read_into_a_cluster():
  assert workers.read_cluster({}) is None
  cluster = workers.read_cluster(_env(CLUSTER, index=2))
  assert cluster.num_workers == 3 and (cluster.task_type, cluster.task_id) == ('worker', 2)
  assert cluster.name('worker', 1) == 'worker 1 at 127.0.0.1:2223'
  assert cluster.leader == ('worker', 0)
  chief = workers.read_cluster(_env({'chief': ['a:1'], 'worker': ['b:2']}, 'chief', 0))
  assert chief.num_workers == 2 and chief.leader == ('chief', 0)


@pytest.mark.parametrize('text,message', [
    ('{"cluster": ', 'TF_CONFIG: not JSON'),
    ('[]', 'TF_CONFIG: expected {"cluster"'),
    (json.dumps({'cluster': {'worker': 'a:1'}, 'task': {'type': 'worker', 'index': 0}}),
     'expected lists of "host:port"'),
    (json.dumps({'cluster': CLUSTER, 'task': {'type': 'chief', 'index': 0}}),
     "task type 'chief' is not in the cluster (its jobs: worker)"),
    (json.dumps({'cluster': CLUSTER, 'task': {'type': 'worker', 'index': 3}}),
     "task index 3 outside the cluster's 3 worker task(s)"),
    (json.dumps({'cluster': CLUSTER, 'task': {'type': 'worker', 'index': '1'}}),
     "task index '1' outside"),
])
def test_a_tf_config_that_does_not_hold_together_is_one_line(text, message):
  with pytest.raises(UserInputError, match=message.replace('(', r'\(').replace(')', r'\)')
                     .replace('[', r'\[').replace('{', r'\{')):
    workers.read_cluster({'TF_CONFIG': text})


def test_the_worker_count_must_match_the_workdirs(tmp_path):
  workers.check_worker_count(str(tmp_path), 'train', 2)  # nothing recorded yet
  (tmp_path / 'model.json').write_text(json.dumps({'num_workers': 2}))
  workers.check_worker_count(str(tmp_path), 'train', 2)
  with pytest.raises(UserInputError, match=r'model.json: the run was started on 2 worker\(s\), '
                                           r'this one has 3 \(TF_CONFIG\); restart it on 2'):
    workers.check_worker_count(str(tmp_path), 'train', 3)
  (tmp_path / 'supernet.json').write_text(json.dumps({'num_layers': 12}))  # before the count
  workers.check_worker_count(str(tmp_path), 'search', 3)


def test_peer_timeout_must_be_positive():
  workers.check_peer_timeout(0.5)
  for value in (0, -1.0):
    with pytest.raises(UserInputError, match=f'--peer_timeout_s={value}: must be positive'):
      workers.check_peer_timeout(value)


class _Error(Exception):
  def __init__(self, message):
    super().__init__(message)
    self.message = message


# What TensorFlow 2.21 said in the runs of tests/test_lost_workers.py, to the survivor.
KILLED = ('Collective ops is aborted by: recvmsg:Connection reset by peer\nAdditional GRPC error '
          'information from remote target /job:worker/replica:0/task:{} while calling '
          '/tensorflow.WorkerService/RecvBuf:\n:UNKNOWN:Error received from peer  '
          '{{grpc_message:"recvmsg:Connection reset by peer", grpc_status:14}}\nThe error could '
          'be from a previous operation. Restart your program to reset.\n\t [[{{{{node '
          'segmenter_1/backbone_1/batch_normalization_1_2/CollectiveReduceV2}}}}]]')
STOPPED = ('Collective ops is aborted by: Error reported from /job:worker/task:1: The following '
           'tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe '
           'tasks have crashed. Check the task logs for an earlier error, or scheduler events '
           '(e.g. preemption, eviction) to debug further.')
LEADER_STOPPED = ('Collective ops is aborted by: Deadline Exceeded\n\nRPC: '
                  '/tensorflow.CoordinationService/Heartbeat\nThe error could be from a previous '
                  'operation. Restart your program to reset.')


def test_the_lost_task_is_named_from_tensorflows_message():
  chief = workers.read_cluster(_env(CLUSTER, index=0))
  other = workers.read_cluster(_env(CLUSTER, index=1))
  assert workers.lost_peer(_Error(KILLED.format(1)), chief) == 'worker 1 at 127.0.0.1:2223'
  assert workers.lost_peer(_Error(KILLED.format(0)), other) == 'worker 0 at 127.0.0.1:2222'
  assert workers.lost_peer(_Error(STOPPED), chief) == 'worker 1 at 127.0.0.1:2223'
  assert workers.lost_peer(_Error(LEADER_STOPPED), other) == 'worker 0 at 127.0.0.1:2222'
  assert workers.lost_peer(_Error('Input to reshape is a tensor with 3 values'), chief) is None


def test_binaries_refuse_a_bad_tf_config_or_timeout_in_one_line(tmp_path):
  env = {'TF_CONFIG': '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", '
                      '"index": 4}}'}
  result = run_tool('train', f'--workdir={tmp_path / "run"}', f'--tfrecord_dir={tmp_path}',
                    '--strategy=multi_worker', env=env)
  assert_bad_input(result, "TF_CONFIG: task index 4 outside the cluster's 1 worker task(s)")
  result = run_tool('search', f'--workdir={tmp_path / "run"}', '--peer_timeout_s=0')
  assert_bad_input(result, '--peer_timeout_s=0.0: must be positive')
