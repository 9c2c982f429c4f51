"""Running the stack on one machine: the local model server and the gateway as processes.

Used by `make run` (run, supervise), `ct-triage model-server` (standin), the benchmarks (bench) and
the integration tests (standin, gateway, ports, processes); stopping means the whole process tree.
The `ct-triage` command is cli; smoke and tf_compat are its checks.
"""
