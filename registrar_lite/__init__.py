"""The limelet registrar: enrols agent TPM identities (Keylime registrar API)."""
