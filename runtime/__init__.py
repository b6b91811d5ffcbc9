"""What every function process runs on: its settings read once at start-up, its telemetry and JSON logs, the clock,
and the one shape of an HTTP answer."""
