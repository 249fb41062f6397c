"""The three-node NATS JetStream cluster for tests that kill a node: it lives in
`cinderblock.chaos.nats_cluster` (ops/cinderblock/chaos/nats_cluster.py), which the chaos
rig's scale-out shape uses too; re-exported here for the tests."""

from cinderblock.chaos.nats_cluster import ClusterError, NatsCluster, Node, nats_cluster

__all__ = ["ClusterError", "NatsCluster", "Node", "nats_cluster"]
