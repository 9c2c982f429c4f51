"""A request error carrying the gRPC status code TF Serving would answer with."""

from __future__ import annotations

import grpc

# tensorflow.error.Code values are the gRPC status code numbers.
_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def status_code(number: int) -> grpc.StatusCode:
    """The gRPC status code with this number (as in tensorflow.error.Code); UNKNOWN if none."""
    return _CODES_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)
