"""1:N face identification, float vs quantized: the LFW protocol, the metrics, the vector index,
the galleries compared, and the run step that ties them to a recognition run."""
