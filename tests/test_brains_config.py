"""From a brain section of the config to a brain: the prompt file, the model, the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from volta.brains import DEFAULT_MODEL, Brain, ClaudeModel, OfflineModel
from volta.config import ConfigError, assemble, load_config
from volta.node import NodeSpec

KEY = "sk-ant-config-test-0123456789"


def agent_of(tmp_path: Path, brain: str) -> tuple[NodeSpec, str]:
    path = tmp_path / "team.yaml"
    path.write_text(f"agents:\n  - id: writer\n    brain: {brain}\n", encoding="utf-8")
    return load_config(path), str(path)


def build_brain(spec: NodeSpec, source: str, environ: dict[str, str]) -> Brain:
    """The brain of the file's one agent, as volta run builds it."""
    (agent,) = assemble(spec, source=source, environ=environ).agents
    assert isinstance(agent.handler, Brain)
    return agent.handler


def test_a_system_file_is_read_beside_the_config_and_follows_the_inline_prompt(
    tmp_path: Path,
) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "writer.md").write_text("  Write plainly.\n", encoding="utf-8")
    agent, source = agent_of(tmp_path, "{system: You write., system_file: prompts/writer.md}")
    brain = build_brain(agent, source, {})
    assert brain.spec.system == "You write.\n\nWrite plainly."


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "cannot read"), (b"\xff\xfe not text", "is not UTF-8 text")],
    ids=["missing", "not UTF-8"],
)
def test_a_system_file_that_cannot_be_read_is_a_config_error_naming_the_key(
    tmp_path: Path, content: bytes | None, words: str
) -> None:
    if content is not None:
        (tmp_path / "prompt.md").write_bytes(content)
    agent, source = agent_of(tmp_path, "{system_file: prompt.md}")
    with pytest.raises(ConfigError, match=words) as caught:
        build_brain(agent, source, {})
    assert "agents[0].brain.system_file" in str(caught.value)


def test_which_model_and_why(tmp_path: Path) -> None:
    agent, source = agent_of(tmp_path, "{system: x}")
    offline = build_brain(agent, source, {})
    assert isinstance(offline.model, OfflineModel)
    assert offline.reason == "ANTHROPIC_API_KEY is not set"
    online = build_brain(
        agent, source, {"ANTHROPIC_API_KEY": f" {KEY} ", "VOLTA_MODEL": "claude-haiku-5"}
    )
    assert isinstance(online.model, ClaudeModel)
    assert online.spec.model == "claude-haiku-5"
    assert online.reason == "claude-haiku-5, key from ANTHROPIC_API_KEY"
    assert KEY not in online.describe()
    forced, _ = agent_of(tmp_path, "{system: x, offline: true}")
    kept_offline = build_brain(forced, source, {"ANTHROPIC_API_KEY": KEY})
    assert isinstance(kept_offline.model, OfflineModel)
    assert kept_offline.reason == "offline: true in its config"


def test_the_start_up_line_names_the_endpoint_anthropic_base_url_gives(tmp_path: Path) -> None:
    agent, source = agent_of(tmp_path, "{system: x}")
    elsewhere = build_brain(
        agent,
        source,
        {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": "http://user:pw@127.0.0.1:9/v1?k=v"},
    )
    assert elsewhere.describe() == (
        f"Claude at http://***@127.0.0.1:9/v1 ({DEFAULT_MODEL}, key from ANTHROPIC_API_KEY)"
    )
    assert "pw" not in elsewhere.describe()
    anthropic = build_brain(agent, source, {"ANTHROPIC_API_KEY": KEY})
    assert anthropic.describe().startswith("Claude at the Anthropic API (")
    # The spec's own base_url comes first.
    named, _ = agent_of(tmp_path, "{system: x, base_url: 'https://proxy.example/v1'}")
    proxied = build_brain(
        named, source, {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    )
    assert proxied.describe().startswith("Claude at https://proxy.example/v1 (")
