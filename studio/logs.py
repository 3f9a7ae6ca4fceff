"""The entry point ``diffusion-studio-debug`` is installed under (``studio.logs:debug_main``), and the
log's location for callers that look for it here.

The log is set up by :mod:`studio.log_setup`; the debug console lives in :mod:`studio.debug`.
"""

from __future__ import annotations

from studio.debug import debug_main
from studio.log_setup import LOG_FILE_NAME, current_log_file, log_file, log_folder

__all__ = ["debug_main", "LOG_FILE_NAME", "current_log_file", "log_file", "log_folder"]
