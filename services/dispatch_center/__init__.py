"""Dispatch center: turns reported needs into service orders and never loses sight of them."""
