"""Defaults shared by the library and the command line (no heavy imports: `--help` stays fast)."""

DEFAULT_WORKERS = 8
DEFAULT_RATE = 100.0  # requests/second, the ceiling: paid plans are asked to stay under 100
DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_GIVE_UP_AFTER = 300.0  # seconds an API may stay down before the run stops
DEFAULT_READ_TIMEOUT = 60.0  # seconds to wait for a response
DEFAULT_JUMP_THRESHOLD = 0.5  # audit --quality: |log return| between consecutive bars (see checks/quality.py)
DEFAULT_VOLUME_TOLERANCE = 0.05  # audit --quality: minute vs daily volume mismatch (see checks/quality.py)
