"""From a ``brain`` section to a running brain: which model, and why.

An agent's brain thinks with Claude when the environment variable its config
names (``ANTHROPIC_API_KEY`` by default) holds a key, and with the offline brain
otherwise (or when the config says ``offline: true``). The key is read here,
from the environment handed in, and given to the SDK; it is never kept in the
configuration objects, printed, or logged. ``VOLTA_MODEL`` overrides the model.
``VOLTA_ANTHROPIC_STRICT=1`` turns on the SDK's response validation (for tests
against a fake API).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from volta.brains import DEFAULT_MODEL, Brain, BrainSpec, ClaudeModel, Model, OfflineModel
from volta.config import AgentConfig, BrainConfig, ConfigError


def _system_prompt(brain: BrainConfig, key: str, source: str | None) -> str:
    if brain.system_file is None:
        return brain.system
    path = brain.system_file
    if not path.is_absolute() and source and Path(source).parent.exists():
        path = Path(source).parent / path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            f"cannot read {path}: {error.strerror}", key=f"{key}.brain.system_file"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text", key=f"{key}.brain.system_file") from None
    return "\n\n".join(part for part in (brain.system.strip(), text.strip()) if part)


def build_brain(
    agent: AgentConfig, key: str, *, source: str | None, environ: Mapping[str, str]
) -> Brain:
    """The brain an agent's config describes, with the model the environment allows.

    Raises:
        ConfigError: the system prompt file cannot be read.
    """
    brain = agent.brain
    assert brain is not None
    model_name = environ.get("VOLTA_MODEL") or brain.model or DEFAULT_MODEL
    api_key = environ.get(brain.api_key_env, "")
    model: Model
    if brain.offline:
        reason = "offline: true in its config"
        model = OfflineModel(agent.id, agent.name, brain.team, reason=reason)
    elif not api_key.strip():
        reason = f"{brain.api_key_env} is not set"
        model = OfflineModel(agent.id, agent.name, brain.team, reason=reason)
    else:
        reason = f"{model_name}, key from {brain.api_key_env}"
        model = ClaudeModel(
            api_key=api_key.strip(),
            agent_id=agent.id,
            base_url=brain.base_url,
            max_retries=brain.max_retries,
            timeout=brain.call_timeout,
            strict=environ.get("VOLTA_ANTHROPIC_STRICT") == "1",
        )
    spec = BrainSpec(
        model=model_name,
        system=_system_prompt(brain, key, source),
        max_tokens=brain.max_tokens,
        temperature=brain.temperature,
        max_steps=brain.max_steps,
        team=brain.team,
        skills=dict(brain.skills),
        history_turns=brain.history_turns,
        history_tokens=brain.history_tokens,
        call_timeout=brain.call_timeout,
    )
    return Brain(spec, model, reason=reason)
