"""Running the stack on one machine: the local model server and the gateway as processes.

Used by `make run`, the benchmarks and the integration tests; stopping means the whole process tree.
"""
