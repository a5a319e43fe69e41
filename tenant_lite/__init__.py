"""The limelet tenant: the operator's command line for Keylime-compatible services."""
