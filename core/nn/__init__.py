"""Neural networks as pure functions: layers (`layers`), combinators that compose them
(`combinators`), convolution and pooling (`conv`), initialisers (`init`), models by name
(`models.MODELS`), losses and metrics by name (`losses.LOSSES`), and the one definition of which
parameters are weights (`params`)."""
