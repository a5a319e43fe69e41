"""The limelet verifier: continuously attests agents (Keylime verifier API)."""
