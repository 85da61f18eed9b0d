"""From a brain's spec to a running brain: which model, and why.

An agent's brain thinks with Claude when the environment variable its spec names
(``ANTHROPIC_API_KEY`` by default) holds a key, and with the offline brain
otherwise (or when the spec says ``offline: true``). The key is read here, from the
environment handed in (never from the process on its own), and given to the SDK; it
is never kept in a spec, printed, or logged. ``VOLTA_MODEL`` overrides the model;
``ANTHROPIC_BASE_URL`` (or the spec's ``base_url``) names another endpoint.
``VOLTA_ANTHROPIC_STRICT=1`` turns on the SDK's response validation (for tests
against a fake API).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from volta.actors import AgentSpec, BuildContext
from volta.core import ConfigError

from ._models import DEFAULT_MODEL, ClaudeModel, Model
from ._offline import OfflineModel

if TYPE_CHECKING:
    from ._brain import Brain, BrainSpec


def _system_prompt(spec: BrainSpec, folder: Path | None) -> str:
    if spec.system_file is None:
        return spec.system
    path = spec.system_file
    if not path.is_absolute() and folder is not None:
        path = folder / path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            f"cannot read {path}: {error.strerror}", key="brain.system_file"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text", key="brain.system_file") from None
    return "\n\n".join(part for part in (spec.system.strip(), text.strip()) if part)


def build_brain(spec: BrainSpec, agent: AgentSpec, context: BuildContext) -> Brain:
    """The brain ``spec`` describes for ``agent``, with the model the environment allows.

    Raises:
        ConfigError: the system prompt file cannot be read (key ``brain.system_file``).
    """
    from ._brain import Brain

    environ = context.environ
    model_name = environ.get("VOLTA_MODEL") or spec.model or DEFAULT_MODEL
    api_key = environ.get(spec.api_key_env, "")
    model: Model
    if spec.offline:
        reason = "offline: true in its config"
        model = OfflineModel(agent.id, agent.name, spec.team, reason=reason)
    elif not api_key.strip():
        reason = f"{spec.api_key_env} is not set"
        model = OfflineModel(agent.id, agent.name, spec.team, reason=reason)
    else:
        reason = f"{model_name}, key from {spec.api_key_env}"
        model = ClaudeModel(
            api_key=api_key.strip(),
            agent_id=agent.id,
            base_url=spec.base_url or environ.get("ANTHROPIC_BASE_URL") or None,
            max_retries=spec.max_retries,
            timeout=spec.call_timeout,
            strict=environ.get("VOLTA_ANTHROPIC_STRICT") == "1",
        )
    system = _system_prompt(spec, context.folder)
    resolved = attrs.evolve(spec, model=model_name, system=system, system_file=None)
    return Brain(resolved, model, reason=reason)
