"""Step 2, configure agents: what each agent may do (its action space) and how it chooses."""
