"""Tests of the agent payload, secure directory, revocation and privilege libraries."""
