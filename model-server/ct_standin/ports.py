"""The model server's ports, defined once: the launcher, fixtures and manifests read them."""

GRPC_PORT = 8500
REST_PORT = 8501
