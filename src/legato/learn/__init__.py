"""Step 5, learn and adapt: outcome attribution, policy updates, models, off-policy evaluation."""
