"""What every function's entry point shares: HTTP routing with the token check, CORS and JSON errors in one place,
and how an event consumer answers the broker's dispatcher."""
