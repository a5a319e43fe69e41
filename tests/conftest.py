"""Root of the test suite: registers the shared fixture modules (swtpm, real Keylime)."""

pytest_plugins = ["tests.fixtures.swtpm", "tests.fixtures.keylime", "tests.fixtures.postgres"]
