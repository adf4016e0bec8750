"""One benchmark, start to finish: the request resolved into a plan (:mod:`.config`), the
prepared data (:mod:`.prepared`, :mod:`.splits`), the reference models (:mod:`.references`,
:mod:`.bundles`) and the runner's stages, identify -> claim -> execute -> record (:mod:`.runner`)."""
