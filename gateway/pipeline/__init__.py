"""The running gateway: the Gateway (gateway.pipeline.gateway), the named ingest path (ingest), the regulatory
stage fed by the log's commits (stage) and the one wiring table of log consumers (consumers). It assembles the
features (acquisition, processing, alarms, hj212, sinks, store) around a Site; no feature imports it."""
