"""The scaffolding registrar_lite and verifier_lite share (DESIGN.md "service kit").

listen   binding the listeners, the Hypercorn config, serving an app until a graceful stop
web      the {code,status,results} responses, ``/version`` and the error handlers of a Quart app
settings the listener's defaults, reading a service's TOML config, the SQLite file it names
sqlite   the one-connection SQLite worker thread and its ``BEGIN IMMEDIATE`` transaction
request_checks the agent id rule and the JSON object body
cli      a service's ``main``: configuration, exit statuses, the signal loop

Allowed to import trio, Quart and Hypercorn; imports attest_protocol and no service.  The
agent never imports it (it must stay free of Quart and Hypercorn); tests/unit/test_layering.py
keeps it so.
"""
