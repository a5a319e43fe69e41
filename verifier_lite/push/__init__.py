"""Push mode (Keylime REST API 3.0): agents behind NAT open a session and push evidence.

Keylime 7.14.3 (keylime/web/verifier/session_controller.py, attestation_controller.py)
serves these routes only when the whole verifier runs ``mode = push``.  Here the mode is per
agent: the same verifier polls pull agents and takes pushes from push agents (enrol.py says
which is which).  Modules::

    errors.py        PushError and its JSON:API rendering
    pop.py           TPM2_Certify proof of possession (RSASSA, RSAPSS and ECDSA AKs)
    sessions.py      sessions, single-use PoP nonces, hashed bearer tokens, rate limits
    negotiation.py   capabilities in, chosen parameters out (PCRs, IMA offset)
    evidence.py      the evidence PATCH: shape checks, then the pull-mode checks.py judges it
    attestations.py  per-agent attestation history and its JSON:API view
    persist.py       histories and active sessions as JSON documents for the store
    flow.py          negotiate, take evidence, judge, record (the one place results land)
    monitor.py       5 x quote_interval without a push turns the agent FAILED
    enrol.py         which enrolments are push agents; refusing one with no policy
    routes.py        the /v3.0 routes; session_routes.py the two session routes
    listener.py      the push agents' own TLS listener (push_port)
"""
