"""The TF Serving client side: gRPC stubs, the client with its retries and deadlines, tensor
conversion, and the generated wire-compatible protos (protos/tfs_api.proto, `make protos`)."""
