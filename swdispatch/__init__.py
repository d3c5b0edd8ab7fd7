"""Command line and local stack of swdispatch."""
