"""Brains: handlers that think with a model and act through the bus.

A :class:`Brain` is a handler (``volta.actors.Handler``): for each message it runs
the tool loop (the model, the bus as tools, the task's deadline and budget) and
answers with the model's text. What it thinks with is a :class:`Model`: Claude
through the ``anthropic`` SDK (:class:`ClaudeModel`), or the deterministic
:class:`OfflineModel` for machines without a key.

- Giving an agent a brain: :class:`Brain`, :class:`BrainSpec`, :data:`DEFAULT_MODEL`.
- Models: :class:`Model` (the protocol), :class:`ModelReply`, :class:`ClaudeModel`,
  :class:`OfflineModel`, and :class:`BrainFailure` when a model call fails for good.
"""

from volta.core import public_names as _public_names

from ._brain import Brain as Brain
from ._brain import BrainSpec as BrainSpec
from ._models import DEFAULT_MODEL as DEFAULT_MODEL
from ._models import BrainFailure as BrainFailure
from ._models import ClaudeModel as ClaudeModel
from ._models import Model as Model
from ._models import ModelReply as ModelReply
from ._offline import OfflineModel as OfflineModel

__all__ = [
    "DEFAULT_MODEL",
    "Brain",
    "BrainFailure",
    "BrainSpec",
    "ClaudeModel",
    "Model",
    "ModelReply",
    "OfflineModel",
]

_public_names(__name__, globals())
