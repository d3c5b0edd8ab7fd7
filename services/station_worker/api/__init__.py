"""The station worker's HTTP API: the staff dashboard API and its page."""
