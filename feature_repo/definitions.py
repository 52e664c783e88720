"""What `feast apply` registers: every definition of the package's feature modules.

Feast imports each .py file of a repo folder as a top-level module; the feature modules import
one another as ``creditflow.feature_repo.*``, so Feast is pointed at this one file
(``.feastignore`` skips the others) and sees each object once. A new definitions module is
added here and to ``.feastignore``.
"""

from creditflow.feature_repo.entities import *  # noqa: F403
from creditflow.feature_repo.feature_services import *  # noqa: F403
from creditflow.feature_repo.feature_views import *  # noqa: F403
from creditflow.feature_repo.on_demand import *  # noqa: F403
from creditflow.feature_repo.sources import *  # noqa: F403
