"""The kubetfx KServe predictor: serves a pushed (or candidate) model over V1, V2 REST and gRPC.

Modules, one job each:

* ``signature.py``       where a model lives (repository version dir or a Trainer's model dir) and what
                         kubetfx_model.json says about it; the V2 input/output tensor descriptions. No TF.
* ``schema_check.py``    request validation against the training schema + conversion to columns. No TF.
* ``servable.py``        one loaded model version: the SavedModel's ``serving_raw`` signature (TF).
* ``batching.py``        the micro-batcher: concurrent requests coalesced into one signature call.
* ``repository_watch.py`` hot reload: polls the repository, loads newer versions in the background.
* ``model.py``           the ``kserve.Model``: load -> preprocess -> predict -> postprocess.
* ``rest_front.py``      the ASGI layer in front of kserve's REST app: body cap, JSON fast path for V1/V2.
* ``error_policy.py``    what a failed request answers (HTTP/gRPC status, one message) and logs (rate-limited).
* ``kserve_changes.py``  what we change in kserve (quiet logs, the front door, the error policy), made in the
                         parent and again in every ``--workers`` child.
* ``server.py``          builds and starts ``kserve.ModelServer`` (with those changes, workers, uvloop);
                         ``ServerThread``: the same server on a thread of another process (InfraValidator).
* ``__main__.py``        the CLI: ``python -m kubetfx.components.predictor --model_repository DIR --model_name NAME``.
"""
