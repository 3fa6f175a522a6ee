"""Step 4, escalate exceptions: the trust ladder, the review queue and the audit log."""
