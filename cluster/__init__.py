"""Who leads: membership, election and the cluster status view.

A node is a cluster of one until replication lands; its status is built in
``node.routes.system`` from the engine.
"""
