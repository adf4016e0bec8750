"""Finding plugins: the typed registries (:mod:`.registry`, a leaf) and the plugin host that fills
them from entry points and builds plugins by name (:mod:`.host`, timm's factory beside its registry)."""
