"""Built-in defaults and the places the agent reads its configuration from.

Values are rust-keylime's (keylime-agent.conf and keylime/src/config/base.rs); units are in
the names.  ``packaging/config/agent.conf`` spells out the same values, and a test keeps the
two equal.
"""

from __future__ import annotations

from pathlib import Path

# -- where configuration comes from (keylime/src/config/base.rs, file_config.rs) -------------
SYS_CONFIG_FILE = Path("/usr/etc/keylime/agent.conf")
SYS_CONFIG_SNIPPETS_DIR = Path("/usr/etc/keylime/agent.conf.d")
CONFIG_FILE = Path("/etc/keylime/agent.conf")
CONFIG_SNIPPETS_DIR = Path("/etc/keylime/agent.conf.d")
# Names one file that replaces all four locations above (file_config.rs).
CONFIG_OVERRIDE_ENV_VAR = "KEYLIME_AGENT_CONFIG"
# KEYLIME_AGENT_<OPTION> overrides <option> (config/env.rs).
ENV_PREFIX = "KEYLIME_AGENT_"
# Overrides keylime_dir when set and not empty (config_translate_keywords in base.rs).
KEYLIME_DIR_ENV_VAR = "KEYLIME_DIR"
# The only table of agent.conf.
AGENT_TABLE = "agent"
# A configuration file or snippet larger than this is refused (the annotated default is
# about 20 KiB; a hundred times that is no configuration).
MAX_CONFIG_FILE_BYTES = 2 * 1024 * 1024

# -- option values ----------------------------------------------------------------------------
# "default" in a path option means "the default file name inside keylime_dir".
DEFAULT_KEYWORD = "default"
DEFAULT_CONFIG_VERSION = "2.4"
DEFAULT_API_VERSIONS = "default"
DEFAULT_UUID = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"
DEFAULT_IP = "127.0.0.1"
DEFAULT_PORT = 9002
DEFAULT_CONTACT_IP = "127.0.0.1"
DEFAULT_CONTACT_PORT = 9002
DEFAULT_REGISTRAR_IP = "127.0.0.1"
DEFAULT_REGISTRAR_PORT = 8890
DEFAULT_REGISTRAR_TLS_PORT = 8891
DEFAULT_KEYLIME_DIR = "/var/lib/keylime"
DEFAULT_ENC_KEYNAME = "derived_tci_key"
DEFAULT_DEC_PAYLOAD_FILE = "decrypted_payload"
DEFAULT_SECURE_SIZE = "1m"
DEFAULT_REVOCATION_ACTIONS_DIR = "/usr/libexec/keylime"
DEFAULT_REVOCATION_NOTIFICATION_IP = "127.0.0.1"
DEFAULT_REVOCATION_NOTIFICATION_PORT = 8992
DEFAULT_PAYLOAD_SCRIPT = "autorun.sh"
DEFAULT_TPM_HASH_ALG = "sha256"
DEFAULT_TPM_ENCRYPTION_ALG = "rsa"
DEFAULT_TPM_SIGNING_ALG = "rsassa"
DEFAULT_EK_HANDLE = "generate"
# limelet's one addition to the [agent] table: rust-keylime reads the TCTI only from the
# TCTI environment variable, which still wins over this option.
DEFAULT_TCTI = "device:/dev/tpmrm0"
DEFAULT_IAK_IDEVID_TEMPLATE = "detect"
DEFAULT_IAK_IDEVID_ASYMMETRIC_ALG = "rsa"
DEFAULT_IAK_IDEVID_NAME_ALG = "sha256"
DEFAULT_RUN_AS = "keylime:tss"
DEFAULT_ATTESTATION_INTERVAL_SECONDS = 60
DEFAULT_VERIFIER_URL = "https://localhost:8881"
DEFAULT_CERTIFICATION_KEYS_SERVER_IDENTIFIER = "ak"
DEFAULT_UEFI_LOGS_EVIDENCE_VERSION = "2.1"
DEFAULT_EXPONENTIAL_BACKOFF_INITIAL_DELAY_MS = 10_000
DEFAULT_EXPONENTIAL_BACKOFF_MAX_RETRIES = 5
DEFAULT_EXPONENTIAL_BACKOFF_MAX_DELAY_MS = 300_000

# -- files in keylime_dir ("default" values of the path options, base.rs) -------------------
DEFAULT_SERVER_KEY_FILE = "server-private.pem"
DEFAULT_SERVER_CERT_FILE = "server-cert.crt"
DEFAULT_PAYLOAD_KEY_FILE = "payload-private.pem"
DEFAULT_AGENT_DATA_FILE = "agent_data.json"  # base.rs DEFAULT_AGENT_DATA_PATH
# The verifier's CA, as Keylime lays out keylime_dir (base.rs DEFAULT_TRUSTED_CLIENT_CA).
DEFAULT_TRUSTED_CLIENT_CA_FILE = "cv_ca/cacert.crt"
# The push agent's verifier CA (push_model.rs default: $KEYLIME_DIR/cv_ca/cacert.crt).
DEFAULT_VERIFIER_TLS_CA_FILE = "cv_ca/cacert.crt"

# -- measurement logs (resolved against ROOT_DIR, not keylime_dir: base.rs) -----------------
ROOT_DIR = "/"
DEFAULT_IMA_ML_FILE = "/sys/kernel/security/ima/ascii_runtime_measurements"
DEFAULT_MEASUREDBOOT_ML_FILE = "/sys/kernel/security/tpm0/binary_bios_measurements"
