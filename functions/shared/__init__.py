"""Behaviour the functions share: settings, job records, media storage, tokens, HTTP answers, telemetry, logs."""
