"""`fracture-edge adapt`: a new head for a site, fitted on the device from its labelled X-rays (numpy only).

    stage.py   the stage: AdaptOptions, adapt_run (claims --out, checks, fits, writes the new run folder)
    cli.py     the `adapt` subcommand
    data.py    the site's images: read, decoded once, run through the edge model for their features
    checks.py  before any feature is read: images under both labels, overlap with the base model's data
    head.py    the logistic head (AdaptedHead, also applied by the Classifier) and its Newton fit
    cv.py      cross-validation: the head's strength C, its thresholds, nested scores
    report.py  adapt_report.{json,md}: nested CV numbers beside a trivial baseline and the base model

Kept light: the Classifier imports head.py, so nothing here imports the stage.
"""
