"""Where runs happen: sweep recipes (:mod:`.sweep_recipes`), the sweep driver and its local
executor (:mod:`.sweep`), and the Ray executor (:mod:`.ray_executor`, docs/cluster.md)."""
