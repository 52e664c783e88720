"""Retraining: the scheduled job that collects new data, trains a challenger, gates and promotes
it. Filled by the continuous-retraining issue."""
