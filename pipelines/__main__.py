import sys

from kubetfx.pipelines.cli.main import main

sys.exit(main())
