"""The BulkInferrer: score data with a pushed model through the serving input path; TFX's InferenceResult."""
