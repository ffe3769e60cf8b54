"""Learner and actor in one process (no gRPC): the harness tests and benchmarks train with."""
