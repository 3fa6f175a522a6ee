"""Delivery: the outbox, the channels that carry messages, and the dispatcher."""
