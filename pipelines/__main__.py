"""``python -m kubetfx.pipelines``: the kubetfx CLI, as the ``kubetfx`` command runs it."""

import sys

from kubetfx.pipelines.cli.main import main

sys.exit(main())
