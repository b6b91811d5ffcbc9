"""Jobs: their records and state machine with its outbox, what their owner sees of them, their signed download links,
cancelling and erasing them, the per-user quotas, and the leases that let one attempt at a time work on one."""
