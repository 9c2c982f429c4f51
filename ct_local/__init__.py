"""Running the stack on one machine: the local model server and the gateway as processes.

Used by `make run` (run), model-server/run_local.py (run_local), the benchmarks (bench) and the
integration tests (model_server, gateway, ports, processes); stopping means the whole process tree.
"""
