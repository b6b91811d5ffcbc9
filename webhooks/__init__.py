"""Users' webhook endpoints and their deliveries: the store, the registry behind the webhooks function's API, and
the address rules that keep deliveries off private networks."""
