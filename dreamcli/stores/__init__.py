"""Store ports (KV namespace, D1 database) and the adapters for real stores."""
