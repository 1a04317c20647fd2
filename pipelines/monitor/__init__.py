"""The monitor pipeline: watch the served model's traffic; start training when it has drifted."""
