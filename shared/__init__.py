"""What the three services share: event contracts, settings, outbox/inbox, db and kafka helpers."""
