"""Station worker: each station's queue of orders, its staff and its social workers."""
