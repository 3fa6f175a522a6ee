"""Step 2, configure agents: what an agent must never do (contact and content guardrails)."""
