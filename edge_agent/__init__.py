"""The limelet edge agent: serves the Keylime agent API from a TPM."""
