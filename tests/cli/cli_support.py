"""How the tests run the `lbwire` command: this interpreter, this tree first on the path."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]

#: A hang guard for one command, not a timing claim.
COMMAND_TIMEOUT = 60.0


def command_env(brokers: Optional[str] = None) -> Dict[str, str]:
    """The environment the command runs in: this tree first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("LBWIRE_BROKERS", None)
    if brokers is not None:
        env["LBWIRE_BROKERS"] = brokers
    return env


def lbwire_argv(*args: str) -> List[str]:
    """The command line that runs `lbwire ARGS...` with this interpreter."""
    return [sys.executable, "-m", "lbwire.cli", *args]
