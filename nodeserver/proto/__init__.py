"""Generated protobuf and gRPC modules (run `python proto/generate.py`); do not edit."""
