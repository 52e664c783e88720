"""Serving: the BentoML service (one class), the in-process online scorer, micro-batching of
concurrent requests and the prediction log. Built into a bento by ``bentofile.yaml``."""
