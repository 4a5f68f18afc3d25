"""Typed request bodies of the HTTP API (OpenAI's completions and chat completions fields,
plus two extensions).

Unknown fields are rejected (422), so a typo is an error rather than a silently ignored
setting. OpenAI fields this server cannot honour are accepted only at their neutral value
and otherwise refused with a 400 that names them (`unsupported()`), never ignored.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _text(v: str, what: str) -> str:
    """JSON can carry a lone surrogate (`"\\ud800"`) that no tokenizer can encode: refuse it here."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text (lone surrogate)") from None
    return v


class StreamOptions(_Body):
    include_usage: bool = Field(False, description="send a last chunk with `usage` (and no choices)")


class GenerateRequest(_Body):
    """The fields completions and chat completions share: all that `build_job` reads."""

    model: str = Field(description="a module's name (its directory under --modules) or a --served-model-name alias")
    max_tokens: int | None = Field(16, ge=1, description="tokens to generate at most per choice (null: 16)")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 = greedy (OpenAI's default is 1)")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    n: int = Field(1, ge=1, le=128, description="choices per prompt")
    stop: str | list[str] | None = Field(None, description="up to 4 strings that end a choice (not included)")
    seed: int | None = Field(None, ge=-(2**63), lt=2**63, description="seeds sampling (a 64-bit integer); choice j "
                             "of a prompt uses seed + j")
    stream: bool = Field(False, description="server-sent events in OpenAI's chunk format, ending with [DONE]")
    stream_options: StreamOptions | None = None
    # OpenAI fields accepted only at their neutral value (see `unsupported`)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = Field(None, description="accepted and ignored (OpenAI's end-user id)")
    # extensions (as in vLLM)
    top_k: int = Field(0, ge=0, description="keep the k most likely tokens when sampling; 0 = off")
    ignore_eos: bool = Field(False, description="keep generating after EOS (benchmarks: fixed lengths)")

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4:
            raise ValueError(f"at most 4 stop strings, got {len(stops)}")
        return [_text(s, "stop") for s in stops if s] or None

    def token_budget(self) -> int | None:
        """Tokens to generate at most per choice; None: as many as the context leaves."""
        return self.max_tokens

    def unsupported(self) -> str | None:
        """The first field set to something this server does not implement, with why."""
        if self.presence_penalty or self.frequency_penalty:
            return "presence_penalty and frequency_penalty are not supported (use 0)"
        if self.logit_bias:
            return "logit_bias is not supported"
        return None


class CompletionRequest(GenerateRequest):
    prompt: str | list[str] = Field(description="one prompt or a list of prompts (each gets `n` choices)")
    logprobs: int | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("prompt must not be an empty list")
        for p in [v] if isinstance(v, str) else v:
            _text(p, "prompt")
        return v

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def token_budget(self) -> int:
        return self.max_tokens or 16  # OpenAI's completions default

    def unsupported(self) -> str | None:
        if self.logprobs:
            return "logprobs is not supported (use null or 0)"
        if self.echo:
            return "echo is not supported"
        if self.suffix:
            return "suffix (insertion) is not supported"
        if self.best_of not in (None, self.n):
            return "best_of is not supported (leave it unset or equal to n)"
        return super().unsupported()


class TextPart(_Body):
    type: Literal["text"] = Field(description="only text parts: this server reads no images or audio")
    text: str

    @field_validator("text")
    @classmethod
    def _valid(cls, v):
        return _text(v, "text")


class ChatMessage(_Body):
    role: str = Field(min_length=1, description="system | user | assistant | ...: the chat template decides "
                      "which roles it accepts")
    content: str | list[TextPart] | None = Field(None, description="a string, or a list of text parts (joined "
                                                 "with newlines)")
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _valid(cls, v):
        return _text(v, "content") if isinstance(v, str) else v

    def for_template(self) -> dict:
        """The plain dict chat templates expect: content as one string."""
        content = self.content if not isinstance(self.content, list) else "\n".join(p.text for p in self.content)
        return {"role": self.role, "content": content or "", **({"name": self.name} if self.name else {})}


class ChatCompletionRequest(GenerateRequest):
    messages: list[ChatMessage] = Field(min_length=1, description="the conversation so far, rendered with the "
                                        "backbone tokenizer's chat template")
    max_tokens: int | None = Field(None, ge=1, description="tokens to generate at most per choice (null: as many "
                                   "as the context leaves, up to --max-new-tokens)")
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for max_tokens")
    # OpenAI fields accepted only at their neutral value (see `unsupported`)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_budget(self):
        if self.max_completion_tokens is not None:
            if self.max_tokens not in (None, self.max_completion_tokens):
                raise ValueError("max_tokens and max_completion_tokens differ: set one of them")
            self.max_tokens = self.max_completion_tokens
        return self

    def unsupported(self) -> str | None:
        if self.logprobs or self.top_logprobs:
            return "logprobs and top_logprobs are not supported"
        if self.tools or self.tool_choice not in (None, "none"):
            return "tools and tool_choice are not supported"
        if self.response_format and self.response_format.get("type") != "text":
            return "response_format is not supported (only {\"type\": \"text\"})"
        return super().unsupported()


class AnswerRequest(_Body):
    model: str = Field(description="a reader module's name")
    question: str = Field(min_length=1, description="the question to answer")
    max_tokens: int | None = Field(None, ge=1, description="answer length limit (null: the module's default)")

    @field_validator("question")
    @classmethod
    def _question(cls, v):
        return _text(v, "question")
