"""A local stand-in for tensorflow_model_server: same flags, same config, same gRPC API.

Used where the TF Serving binary cannot run. It serves the SavedModels listed in a text-protobuf
ModelServerConfig with TensorFlow, over the real tensorflow_serving gRPC services.
"""
