"""Input columns to model features: the statistics pass, the feature spec, standardization, targets."""
