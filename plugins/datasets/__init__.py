"""Built-in unlearnkit plugins."""
