"""A run (`runner`: threads claiming units until none is left) and one group of units
fetched, written and settled (`units`). The HTTP client beneath them is `polyledger.polygon`."""
