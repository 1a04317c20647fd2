"""The ``kubetfx`` command line (``python -m kubetfx.pipelines``)."""
