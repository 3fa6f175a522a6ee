"""Step 3, monitor and optimize: KPIs, lift against the holdout, and (later) stop-loss."""
