"""``codex_ml.tracking.mlflow_utils``: the documented import path of the MLflow helpers.

The helpers live with the MLflow backend (:mod:`codex_ml.backends.mlflow_utils`); this module
keeps the name users were given working.
"""

from codex_ml.backends.mlflow_utils import (  # noqa: F401 - the public re-export
    chunks,
    clip_value,
    default_tracking_uri,
    is_file_store,
    log_artifacts,
    log_metrics,
    log_params,
    prepare_environment,
    resolve_tracking_uri,
    start_run,
)
