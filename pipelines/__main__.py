import sys

from kubetfx.pipelines.cli import main

sys.exit(main())
