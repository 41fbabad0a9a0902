"""Benchmarks and chaos runs against real taskmesh processes (not tests)."""
