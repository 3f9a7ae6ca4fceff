"""The bundle's entry script: both programs run it; the debug one is told apart by its name."""

import sys
from pathlib import Path


def _main() -> int:
    if Path(sys.executable).stem.endswith("-debug"):
        from studio.logs import debug_main

        return debug_main()
    from studio.app import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())
