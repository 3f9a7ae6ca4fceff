import sys

from studio.app import main

sys.exit(main())
