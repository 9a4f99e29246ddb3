"""dlrun's library, in layers that import only downwards:

    errors                     exceptions with exit codes (no dependencies)
    config                     the schema, loading YAML, error messages (no JAX)
    data, nn                   data sets by name; layers, models, losses by name
    training                   set-up, steps, programs, the one epoch loop, `train`
    sweep, report              sweeps over trials; run directories, plots, comparisons

`core` never imports `dlrun.experiments` or `dlrun.cli`.
"""
