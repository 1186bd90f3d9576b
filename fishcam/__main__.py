import sys

from fishcam.cli import main

sys.exit(main())
