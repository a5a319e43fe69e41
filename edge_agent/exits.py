"""Exit statuses of ``limelet-agent``, shared by the command line (cli.py) and the daemon
(daemon.py) without either importing the other: 0 after a clean stop or a good
``--check-config``, 1 when the agent cannot start or stops on an error."""

EXIT_OK = 0
EXIT_FAILURE = 1
