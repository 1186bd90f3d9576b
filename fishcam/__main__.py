import sys

from fishcam.app.cli import main

sys.exit(main())
