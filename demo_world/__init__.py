"""The synthetic lending world: a data source like any other (`creditflow generate`); nothing
downstream knows it."""
