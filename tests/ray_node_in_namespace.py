"""A Ray worker node started in this process (run under `unshare -m` with
a folder covered by an empty tmpfs, so that the node does not see what the
driver wrote there): Ray's own Node class, as ray.cluster_utils starts a
worker node; it prints its node ID, and when its stdin closes it stops its
processes through that handle."""

import sys

from ray._private.node import Node
from ray._private.parameter import RayParams
from ray._private.services import wait_for_node

params = RayParams(
    gcs_address=sys.argv[1],
    num_cpus=1,
    num_gpus=0,
    object_store_memory=150 * 2**20,
    min_worker_port=0,
    max_worker_port=0,
    include_log_monitor=False,
    node_manager_port=0,
)
params.dashboard_agent_listen_port = None
node = Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
wait_for_node(node.gcs_address, node.plasma_store_socket_name, 60)  # registered, as add_node waits
print(node.node_id, flush=True)
sys.stdin.read()
node.kill_all_processes(check_alive=False, allow_graceful=True, wait=True)
