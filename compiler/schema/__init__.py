"""The spec language: typed pydantic models for every section of a model spec."""

from compiler.schema.architecture import *  # noqa: F403
from compiler.schema.common import *  # noqa: F403
from compiler.schema.data import *  # noqa: F403
from compiler.schema.objective import *  # noqa: F403
from compiler.schema.provenance import (  # noqa: F401  (re-exported)
    Node,
    Provenance,
    Sourced,
    assumed,
    documented,
    likely,
    undisclosed,
)
from compiler.schema.schedule import *  # noqa: F403
from compiler.schema.spec import DynamicThresholding, InferenceSpec, Spec  # noqa: F401
