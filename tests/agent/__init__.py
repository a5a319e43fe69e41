"""Tests of the edge agent: configuration, keys, backoff, registration."""
