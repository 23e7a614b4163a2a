"""One worker module per client library; each runs one job in its own process."""
