"""Platform templates for `tf init --platform`: connectors, access rules and policy packs as data.

Connectors are created without a credential (``tf connector add TYPE --token …`` fills one in
later and replaces the empty one). Presets apply in order, so ``read-only`` then
``require-approval`` means reads pass and every other action is held. Rules are for the agent
named by ``--agent`` (default: the platform's name, e.g. ``tf run --name "langchain" …``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TEMPLATES", "Rule", "Template"]


@dataclass(frozen=True, slots=True)
class Rule:
    connector: str
    pattern: str | None = None
    decision: str | None = None
    preset: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    description: str
    connectors: tuple[str, ...]
    rules: tuple[Rule, ...]
    packs: tuple[str, ...]


TEMPLATES: dict[str, Template] = {
    "langchain": Template(
        description="LLM agents (LangChain, LlamaIndex, CrewAI): model APIs allowed, "
        "OpenAI deletes and fine-tuning guarded",
        connectors=("openai", "anthropic"),
        rules=(
            Rule("openai", preset="allow-all"),
            Rule("anthropic", preset="allow-all"),
        ),
        packs=("openai-safe-defaults",),
    ),
    "n8n": Template(
        description="workflow automation (n8n, Zapier-style flows): Slack and GitHub reads "
        "allowed, Slack messages allowed, OpenAI allowed, every other Slack and GitHub "
        "action held for a human",
        connectors=("slack", "github", "openai"),
        rules=(
            Rule("slack", preset="read-only"),
            Rule("slack", preset="require-approval"),
            Rule("slack", "slack.message.*", "allow"),
            Rule("github", preset="read-only"),
            Rule("github", preset="require-approval"),
            Rule("openai", preset="allow-all"),
        ),
        packs=("slack-safe-defaults",),
    ),
    "claude-code": Template(
        description="coding assistants (Claude Code, Aider): Anthropic allowed, GitHub "
        "reads/PRs/issues allowed, merges held, repository deletion denied",
        connectors=("anthropic", "github"),
        rules=(
            Rule("anthropic", preset="allow-all"),
            Rule("github", preset="read-only"),
            Rule("github", "github.pr.*", "allow"),
            Rule("github", "github.issue.*", "allow"),
            Rule("github", "github.branch.create", "allow"),
            Rule("github", "github.pr.merge", "require_approval"),
            Rule("github", "github.repo.delete", "deny"),
        ),
        packs=("github-safe-defaults",),
    ),
}
