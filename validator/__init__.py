"""The on-bus validator: scanner, decision, durable tap queue, sync with the depot, screen."""
