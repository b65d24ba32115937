"""Machine-to-machine HTTP routes (health, later webhooks and OAuth callbacks)."""
