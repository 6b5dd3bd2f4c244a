# nbray's public surface, listed once: ``nbray/__init__.py`` reads this file to import each
# name on first use, type checkers read it as the package's stub, and
# tests/unit/test_exported_members.py holds the list so a change is noticed.
# One ``from MODULE import NAME as PUBLIC_NAME`` per line (no grouping: __init__ parses it).

from ._compose.api import available_resources as available_resources
from ._compose.api import cancel as cancel
from ._compose.api import cluster_resources as cluster_resources
from ._compose.api import get as get
from ._compose.api import get_actor as get_actor
from ._compose.api import get_gpu_ids as get_gpu_ids
from ._compose.api import kill as kill
from ._compose.api import nodes as nodes
from ._compose.api import put as put
from ._compose.api import remote as remote
from ._compose.api import wait as wait
from ._compose.lifecycle import ClusterContext as ClusterContext
from ._compose.lifecycle import init as init
from ._compose.lifecycle import is_initialized as is_initialized
from ._compose.lifecycle import shutdown as shutdown
from ._model.actor import ActorClass as ActorClass
from ._model.actor import ActorHandle as ActorHandle
from ._model.actor import method as method
from ._model.object_ref import ObjectID as ObjectID
from ._model.object_ref import ObjectRef as ObjectRef
from ._model.remote_function import RemoteFunction as RemoteFunction
from ._model.runtime_context import get_runtime_context as get_runtime_context
from .widgets import monitor as monitor
from .widgets import task_graph as task_graph
from .widgets import timeline as timeline
from . import actor as actor
from . import runtime_env as runtime_env
from . import errors as errors
from . import exceptions as exceptions
from . import experimental as experimental
from . import util as util
from . import runtime_context as runtime_context
from . import widgets as widgets

__version__: str
__all__: list[str]
