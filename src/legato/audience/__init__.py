"""Who is eligible: segments, lifecycle stages and audiences."""
