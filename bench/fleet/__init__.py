"""A simulated fleet of Keylime agents for benchmarking verifiers (bench/verifier_fleet.py).

Each agent is a real HTTPS server with client-certificate checking on its own loopback
address (127.0.x.y, one port for all), answering the Keylime agent API that a verifier uses
in pull mode: ``/version``, ``quotes/integrity``, ``quotes/identity``, ``keys/vkey`` and
``notifications/revocation`` (rust-keylime keylime-agent/src/quotes_handler.rs).  Its quotes
are TPMS_ATTEST and TPMT_SIGNATURE made in software with the agent's own AK, over the
requested PCRs, encoded as attest_protocol encodes them (tests/interop/
test_fleet_quotes_vs_keylime.py checks them with Keylime's own ``checkquote``).

Modules: ``identity`` (deterministic per-agent keys and addresses, shared TLS/NK material),
``quote`` (pure quote building), ``server`` (the minimal HTTP/1.1 keep-alive server),
``worker`` (one process hosting a slice of the fleet), ``fleet`` (spawning workers,
enrolment bodies, collecting their counters).
"""
