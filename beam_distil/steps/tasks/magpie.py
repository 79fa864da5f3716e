"""``Magpie`` and ``MagpieGenerator``: instructions (and conversations) from nothing but a chat template's pre-query.

Example::

    Magpie(llm=OpenAILLM(model="Qwen/Qwen2.5-7B-Instruct", base_url=...), pre_query_template="qwen2")
    # rows (optionally with `system_prompt`) get `instruction`, `response` and `model_name`

    # distilabel's way: the template on the LLM
    Magpie(llm=LlamaCppLLM(model_path="qwen.gguf", magpie_pre_query_template="qwen2"), n_turns=3)

    MagpieGenerator(llm=LlamaCppLLM(), pre_query_template="chatml", num_rows=100, only_instruction=True)
    # a root step: yields rows with `instruction` and `model_name`

An instruct model was trained on ``<user header> instruction <end of turn> <assistant header> answer``. Sent
only the user header (the *pre-query template*, e.g. ``<|im_start|>user\\n`` for ChatML) as a raw text
completion, it writes a plausible user instruction. Each turn of a row is therefore two calls:

1. a raw completion (a string prompt: ``OpenAILLM`` sends it to ``/v1/completions``, ``LlamaCppLLM`` to
   ``create_completion``) of the system block, the conversation so far rendered in the template, and the
   pre-query template; it stops at the template's end-of-turn token and is stripped (``parse_instruction``);
2. a normal chat call answering the conversation so far.

beam_distil renders the template itself (distilabel asks the LLM's tokenizer), so the template must be one it
knows: ``"llama3"``, ``"qwen2"`` or ``"chatml"`` (the same ChatML as qwen2; SmolLM2, the embedded model, uses
it). Any other string is a custom pre-query template sent verbatim; it cannot render a system prompt or earlier
turns, so it only works for one-turn rows without a system prompt (anything else fails the row, or the
construction when the step's own settings make it impossible).

Only LLMs that complete raw text prompts can run Magpie (``completes_raw_text``: ``OpenAILLM`` and the
OpenAI-compatible servers that take text completions, ``LlamaCppLLM``, ``OllamaLLM``). Any other
(``VertexAILLM``, ``GroqLLM``, ``MistralLLM``...) is refused when the step is built.

The template is the task's ``pre_query_template`` when given, else the LLM's ``magpie_pre_query_template``
(distilabel's place for it; its resolved strings are recognised), else ``"chatml"``.

``distilabel_metadata`` is laid out as in distilabel: ``statistics_<name>``, ``{"input_tokens": [...],
"output_tokens": [...]}`` with one entry per call (instructions and answers, in order), and no raw prompts or
answers.

A failed call, or an empty instruction or answer, ends the row's conversation there and keeps the turns that
succeeded, as distilabel does: ``conversation`` holds the messages so far (``[]`` if the first instruction
failed), or ``instruction`` is kept with ``response=None``. The row also gets
``distilabel_metadata["error_<name>"]`` and counts as failed (dead-lettered), so it can be found and re-run.

Random choices (the system prompt among several) come from a ``random.Random`` seeded with ``seed`` and the
row's content (``Magpie``) or the row's position (``MagpieGenerator``), never from global state.

Differences from distilabel:
    - with ``n_turns=1``, a row whose answer failed keeps ``instruction`` (``response`` is ``None``) where
      distilabel switches that row to a one-message ``conversation`` column;
    - ``n_turns=1`` always gives ``instruction``/``response`` (also with ``include_system_prompt``), except with
      ``end_with_user``, which gives a one-message ``conversation``;
    - with ``LlamaCppLLM`` a generation's seed derives from its prompt, so rows with the same system prompt get
      the same first instruction (give rows different system prompts, or use a server).

References:
    - `Magpie: Alignment Data Synthesis from Scratch by Prompting Aligned LLMs with Nothing
      <https://arxiv.org/abs/2406.08464>`_
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from dataclasses import dataclass
from typing import Any, Dict, Generator, List, Optional, Tuple, Union

from pydantic import Field, PositiveInt, field_validator, model_validator

from beam_distil.helpers import seeded_random
from beam_distil.models.base import ChatType, LLM
from beam_distil.runtime_parameters import RuntimeParameter, RuntimeParametersMixin
from beam_distil.rows import DISTILABEL_METADATA_KEY
from beam_distil.steps.base import GeneratorStepOutput, StepColumns
from beam_distil.steps.tasks.base import GeneratorTask
from beam_distil.steps.tasks.sequential import ConversationRecord, NoAnswer, SequentialCallsTask, call_statistics

_logger = logging.getLogger(__name__)

MAGPIE_MULTI_TURN_SYSTEM_PROMPT = (
    "You are a helpful Al assistant. The user will engage in a multi-round conversation"
    " with you, asking initial questions and following up with additional related questions."
    " Your goal is to provide thorough, relevant and insightful responses to help the user"
    " with their queries."
)
"""The system prompt of a multi-turn conversation when none is given (from the paper, as distilabel)."""

SystemPrompts = Union[str, List[str], Dict[str, str], Dict[str, Tuple[str, float]]]


@dataclass(frozen=True)
class ChatTemplate:
    """Enough of a chat template to render a conversation as raw text.

    ``turn`` is formatted with ``role`` and ``content``; ``header`` with ``role`` gives the start of a turn.
    """

    begin: str
    header: str
    turn: str
    end_of_turn: str

    @property
    def pre_query(self) -> str:
        return self.begin + self.header.format(role="user")


_CHATML = ChatTemplate(
    begin="", header="<|im_start|>{role}\n", turn="<|im_start|>{role}\n{content}<|im_end|>\n", end_of_turn="<|im_end|>"
)

CHAT_TEMPLATES: Dict[str, ChatTemplate] = {
    "llama3": ChatTemplate(
        begin="<|begin_of_text|>",
        header="<|start_header_id|>{role}<|end_header_id|>\n\n",
        turn="<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>",
        end_of_turn="<|eot_id|>",
    ),
    "qwen2": _CHATML,
    "chatml": _CHATML,
}
"""The pre-query templates beam_distil can render, by name."""

MAGPIE_PRE_QUERY_TEMPLATES: Dict[str, str] = {name: template.pre_query for name, template in CHAT_TEMPLATES.items()}
"""Name -> pre-query template (what distilabel's ``MAGPIE_PRE_QUERY_TEMPLATES`` holds, plus ``"chatml"``)."""

_TEMPLATE_NAMES: Dict[str, str] = {}
for _name, _pre_query in MAGPIE_PRE_QUERY_TEMPLATES.items():
    _TEMPLATE_NAMES.setdefault(_pre_query, _name)

# Tokens that start a new turn in any known template: an instruction is cut there even when the server
# ignored the stop sequence.
_TURN_MARKERS = ("<|im_end|>", "<|im_start|>", "<|eot_id|>", "<|start_header_id|>", "<|end_of_text|>", "<|endoftext|>")


def supports_raw_completion(llm: LLM) -> bool:
    """Whether ``llm`` completes a raw string prompt, without a chat template (``LLM.completes_raw_text``)."""
    return type(llm).completes_raw_text


def _check_llm_can_complete(llm: LLM) -> LLM:
    if not supports_raw_completion(llm):
        raise ValueError(
            f"Magpie needs an LLM that completes raw text prompts; {type(llm).__name__} cannot. Use OpenAILLM (or"
            " an OpenAI-compatible server with text completions), LlamaCppLLM or OllamaLLM."
        )
    return llm


def build_magpie_prompt(messages: ChatType, pre_query_template: str) -> str:
    """The raw prompt asking for the next user message: ``messages`` (system prompt and the turns so far)
    rendered in the named template, followed by its pre-query template.

    A custom pre-query template (not a name of ``CHAT_TEMPLATES``) is returned as it is and accepts no messages.
    """
    template = CHAT_TEMPLATES.get(pre_query_template)
    if template is None:
        if messages:
            raise ValueError(
                "a custom pre_query_template cannot render a system prompt or earlier turns; use one of"
                f" {sorted(CHAT_TEMPLATES)} or a single turn without system prompt"
            )
        return pre_query_template
    rendered = "".join(template.turn.format(role=m["role"], content=m["content"]) for m in messages)
    return template.begin + rendered + template.header.format(role="user")


def parse_instruction(output: Optional[str], pre_query_template: str = "chatml") -> Optional[str]:
    """The user message in a raw completion: the text before the first end-of-turn (or new-turn) token,
    stripped; ``None`` for no answer or an empty one."""
    if output is None:
        return None
    template = CHAT_TEMPLATES.get(pre_query_template)
    markers = ((template.end_of_turn,) if template else ()) + _TURN_MARKERS
    text = output
    for marker in markers:
        text = text.split(marker, 1)[0]
    return text.strip() or None


def choose_system_prompt(system_prompt: Optional[SystemPrompts], rng: random.Random) -> Tuple[Optional[str], Optional[str]]:
    """``(system prompt, key)`` picked from the field's value with ``rng``: a string is used as it is, a list
    gives a uniform pick, a dict a uniform pick of its keys or, for ``(prompt, weight)`` values, a weighted
    one. The key is ``None`` unless ``system_prompt`` is a dict."""
    if system_prompt is None or isinstance(system_prompt, str):
        return system_prompt, None
    if isinstance(system_prompt, list):
        return rng.choice(system_prompt), None
    keys = list(system_prompt)
    values = [system_prompt[key] for key in keys]
    weights = [value[1] for value in values] if isinstance(values[0], (tuple, list)) else None
    key = rng.choices(keys, weights=weights, k=1)[0]
    value = system_prompt[key]
    return (value[0] if isinstance(value, (tuple, list)) else value), key


class MagpieBase(RuntimeParametersMixin):
    """The fields and the turn logic shared by ``Magpie`` and ``MagpieGenerator``."""

    llm: LLM
    n_turns: RuntimeParameter[PositiveInt] = Field(default=1, description="The number of turns of the conversation.")
    end_with_user: RuntimeParameter[bool] = Field(
        default=False, description="Whether the conversation should end with a user message."
    )
    include_system_prompt: RuntimeParameter[bool] = Field(
        default=False, description="Whether to keep the system prompt in the generated conversation."
    )
    only_instruction: RuntimeParameter[bool] = Field(
        default=False, description="Generate only the instruction (`n_turns` is then ignored)."
    )
    system_prompt: Optional[RuntimeParameter[SystemPrompts]] = Field(
        default=None,
        description="A system prompt, a list of them (one picked per row), a dict name -> prompt (one picked per"
        " row, its name in `system_prompt_key`) or name -> (prompt, probability).",
    )
    pre_query_template: str = Field(
        default="chatml",
        description=f"One of {sorted(CHAT_TEMPLATES)}, or a custom pre-query template sent verbatim; when not"
        " given, the LLM's `magpie_pre_query_template` (as in distilabel), else 'chatml'.",
    )
    seed: RuntimeParameter[int] = Field(default=42, description="Seeds the choice of system prompts.")

    @field_validator("llm")
    @classmethod
    def _check_llm(cls, llm: LLM) -> LLM:
        return _check_llm_can_complete(llm)

    @model_validator(mode="before")
    @classmethod
    def _template_from_llm(cls, data: Any) -> Any:
        # distilabel keeps the template on the LLM (MagpieChatTemplateMixin); the task's own wins when given.
        if isinstance(data, dict) and data.get("pre_query_template") is None:
            llm = data.get("llm")
            template = llm.get("magpie_pre_query_template") if isinstance(llm, dict) else getattr(llm, "magpie_pre_query_template", None)
            if template is not None:
                data = {**data, "pre_query_template": template}
        return data

    @field_validator("system_prompt")
    @classmethod
    def _check_system_prompt(cls, value: Optional[SystemPrompts]) -> Optional[SystemPrompts]:
        if isinstance(value, (list, dict)) and not value:
            raise ValueError("system_prompt must not be an empty list or dict")
        if isinstance(value, dict):
            values = list(value.values())
            weighted = [isinstance(v, (tuple, list)) for v in values]
            if any(weighted) and not all(weighted):
                raise ValueError("system_prompt: either every value is a (prompt, weight) pair or none is")
            if all(weighted) and not math.isclose(sum(v[1] for v in values), 1.0, abs_tol=1e-6):
                raise ValueError("system_prompt: the weights of the system prompts must sum to 1.0")
        return value

    @field_validator("pre_query_template")
    @classmethod
    def _check_pre_query_template(cls, value: str) -> str:
        if not value:
            raise ValueError("pre_query_template must not be empty")
        # A known pre-query string (distilabel's LLMs hold the resolved string) is its template's name, so that
        # system prompts and earlier turns can be rendered.
        return _TEMPLATE_NAMES.get(value, value)

    @model_validator(mode="after")
    def _check_custom_template(self) -> "MagpieBase":
        if self.pre_query_template not in CHAT_TEMPLATES:
            if self.system_prompt is not None:
                raise ValueError("a custom pre_query_template cannot render a system prompt; use a named template")
            if self.n_turns > 1 and not self.only_instruction:
                raise ValueError("a custom pre_query_template cannot render earlier turns; use n_turns=1")
        return self

    @property
    def outputs(self) -> StepColumns:
        if self.only_instruction:
            columns = ["instruction", "model_name"]
        elif self.n_turns == 1 and not self.end_with_user:
            columns = ["instruction", "response", "model_name"]
        else:
            columns = ["conversation", "model_name"]
        if isinstance(self.system_prompt, dict):
            columns.append("system_prompt_key")
        return columns

    def magpie_generation_kwargs(self) -> Dict[str, Any]:
        """The LLM's generation kwargs with the template's end-of-turn token added to ``stop``."""
        kwargs = dict(self.llm.generation_kwargs or {})
        template = CHAT_TEMPLATES.get(self.pre_query_template)
        if template is not None:
            stop = kwargs.get("stop") or []
            stop = [stop] if isinstance(stop, str) else list(stop)
            if template.end_of_turn not in stop:
                stop.append(template.end_of_turn)
            kwargs["stop"] = stop
        return kwargs

    def _system_prompt_for(self, input: Dict[str, Any], rng: random.Random) -> Tuple[Optional[str], Optional[str]]:
        if input.get("system_prompt") is not None:
            return input["system_prompt"], None
        system, key = choose_system_prompt(self.system_prompt, rng)
        if system is None and self.n_turns > 1 and not self.only_instruction:
            system = MAGPIE_MULTI_TURN_SYSTEM_PROMPT
        return system, key

    def magpie_turns(
        self, input: Dict[str, Any], rng: random.Random
    ) -> Generator[Union[str, ChatType], str, Dict[str, Any]]:
        """Yields each prompt (a raw string for a user message, a chat for an answer), receives its answer,
        returns the output columns."""
        system, key = self._system_prompt_for(input, rng)
        messages: ChatType = [{"role": "system", "content": system}] if system is not None else []

        def keeping_turns(reason: str) -> NoAnswer:
            # As distilabel, a failed turn keeps the messages that came before it.
            return NoAnswer(reason, columns=self.partial_columns(messages, key))

        for turn in range(1, self.n_turns + 1):
            try:
                raw = yield build_magpie_prompt(messages, self.pre_query_template)
            except NoAnswer as failure:
                raise keeping_turns(str(failure)) from failure
            instruction = parse_instruction(raw, self.pre_query_template)
            if instruction is None:
                raise keeping_turns(f"turn {turn} gave an empty instruction")
            messages.append({"role": "user", "content": instruction})
            if self.only_instruction or (turn == self.n_turns and self.end_with_user):
                break
            try:
                answer = yield [dict(message) for message in messages]
            except NoAnswer as failure:
                raise keeping_turns(str(failure)) from failure
            answer = answer.strip() if answer is not None else ""
            if not answer:
                raise keeping_turns(f"turn {turn} gave an empty response")
            messages.append({"role": "assistant", "content": answer})
        return self.magpie_columns(messages, key)

    def magpie_columns(self, messages: ChatType, key: Optional[str]) -> Dict[str, Any]:
        conversation = [m for m in messages if self.include_system_prompt or m["role"] != "system"]
        turns = [m for m in messages if m["role"] != "system"]
        if self.only_instruction:
            columns: Dict[str, Any] = {"instruction": turns[0]["content"]}
        elif self.n_turns == 1 and not self.end_with_user:
            columns = {"instruction": turns[0]["content"], "response": turns[1]["content"]}
        else:
            columns = {"conversation": conversation}
        if isinstance(self.system_prompt, dict):
            columns["system_prompt_key"] = key
        return columns

    def partial_columns(self, messages: ChatType, key: Optional[str]) -> Dict[str, Any]:
        """The columns of a row whose later turn failed, keeping the messages that succeeded: the ``conversation``
        so far (``[]`` when the first instruction failed), or the ``instruction`` with a ``None`` response."""
        turns = [m for m in messages if m["role"] != "system"]
        if self.only_instruction:
            columns: Dict[str, Any] = {"instruction": None}
        elif self.n_turns == 1 and not self.end_with_user:
            columns = {"instruction": turns[0]["content"] if turns else None, "response": None}
        else:
            columns = {"conversation": [m for m in messages if self.include_system_prompt or m["role"] != "system"]}
        if isinstance(self.system_prompt, dict):
            columns["system_prompt_key"] = key
        return columns

    def failed_output(self, input: Dict[str, Any]) -> Dict[str, Any]:
        """The columns of a row whose calls failed."""
        return {column: None for column in self.outputs if column != "model_name"}

    def conversation_metadata(self, record: ConversationRecord) -> Dict[str, Any]:
        """distilabel's layout: only ``statistics_<name>``, the tokens of each call (instructions and answers, in
        order)."""
        return {f"statistics_{self.name}": call_statistics(record)}


def _row_content(input: Dict[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in input.items() if key != DISTILABEL_METADATA_KEY}


class Magpie(SequentialCallsTask, MagpieBase):
    """Generates an instruction and its answer (or a conversation of ``n_turns``) for every input row.

    Attributes:
        n_turns: turns of the conversation (a user message and, unless it is the last turn with
            ``end_with_user``, an answer each).
        end_with_user: end the conversation with a user message.
        include_system_prompt: keep the system prompt in ``conversation``.
        only_instruction: only the first instruction (one call per row; ``n_turns`` is ignored).
        system_prompt: the system prompt of rows without a ``system_prompt`` column: a string, a list (one picked
            per row) or a dict of them (name -> prompt, or name -> (prompt, probability); the name goes to
            ``system_prompt_key``). A multi-turn row without any gets ``MAGPIE_MULTI_TURN_SYSTEM_PROMPT``.
        pre_query_template: ``"llama3"``, ``"qwen2"``, ``"chatml"`` or a custom pre-query string.
        seed: seeds the choice of system prompt, together with the row's content.

    Input columns:
        - system_prompt (``str``, optional): the row's system prompt.

    Output columns:
        - instruction (``str``) and response (``str``) for one turn; conversation (``List[Dict[str, str]]``)
          for several (or with ``end_with_user``); only instruction with ``only_instruction``.
        - system_prompt_key (``str``): when ``system_prompt`` is a dict.
        - model_name (``str``).
    """

    @property
    def inputs(self) -> StepColumns:
        return {"system_prompt": False}

    @property
    def outputs(self) -> StepColumns:
        return MagpieBase.outputs.fget(self)  # type: ignore[attr-defined]

    def generation_kwargs(self, input: Dict[str, Any]) -> Dict[str, Any]:
        return self.magpie_generation_kwargs()

    def format_input(self, input: Dict[str, Any]) -> Union[str, ChatType]:  # type: ignore[override]
        """The raw prompt of the row's first instruction."""
        rng = seeded_random(self.seed, _row_content(input))
        system, _ = self._system_prompt_for(input, rng)
        messages = [{"role": "system", "content": system}] if system is not None else []
        return build_magpie_prompt(messages, self.pre_query_template)

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The columns of a row whose only call was its instruction (``only_instruction``)."""
        instruction = parse_instruction(output, self.pre_query_template)
        return {"instruction": instruction}

    # SequentialCallsTask comes first in the method order; these two are MagpieBase's.
    def failed_output(self, input: Dict[str, Any]) -> Dict[str, Any]:
        return MagpieBase.failed_output(self, input)

    def conversation_metadata(self, record: ConversationRecord) -> Dict[str, Any]:
        return MagpieBase.conversation_metadata(self, record)

    def conversation(self, input: Dict[str, Any]) -> Generator[Union[str, ChatType], str, Dict[str, Any]]:  # type: ignore[override]
        rng = seeded_random(self.seed, _row_content(input))
        return (yield from self.magpie_turns(input, rng))


class MagpieGenerator(GeneratorTask, MagpieBase):
    """Generates ``num_rows`` instructions (or conversations) from scratch, as ``Magpie`` does for a row.

    Row ``i`` picks its system prompt with ``random.Random`` seeded from ``seed`` and ``i``. A row whose call
    fails or gives an empty text is kept with ``None`` columns and ``distilabel_metadata["error_<name>"]``.

    Attributes:
        llm: the instruct LLM (loaded in ``load()``); must complete raw text (``RAW_COMPLETION_LLMS``).
        num_rows: how many rows to generate.
        (and ``Magpie``'s: ``n_turns``, ``end_with_user``, ``include_system_prompt``, ``only_instruction``,
        ``system_prompt``, ``pre_query_template``, ``seed``.)

    Output columns: as ``Magpie``.
    """

    num_rows: RuntimeParameter[PositiveInt] = Field(default=..., description="How many rows to generate.")
    add_raw_output: RuntimeParameter[bool] = Field(default=True, description="Keep the LLM's raw texts.")
    add_raw_input: RuntimeParameter[bool] = Field(default=True, description="Keep the prompts.")

    @property
    def outputs(self) -> StepColumns:
        return MagpieBase.outputs.fget(self)  # type: ignore[attr-defined]

    async def _generate_row(self, index: int, kwargs: Dict[str, Any]) -> Dict[str, Any]:
        from beam_distil.beam.sequential_calls import row_result, run_conversation

        # Each row samples with its own seed: rows share one prompt, and a backend that seeds from the prompt
        # (llama.cpp here) would otherwise give every row the same instruction.
        kwargs = {**kwargs, "seed": seeded_random(self.seed, "sampling", index).getrandbits(31)}
        record = await run_conversation(self.magpie_turns({}, seeded_random(self.seed, "row", index)), self.llm, kwargs)
        if record.error is not None:
            _logger.warning("%s: row %d failed: %s", self.name, index, record.error)
        [row] = row_result(self, {}, record).rows
        return row

    def process(self, offset: int = 0) -> GeneratorStepOutput:  # type: ignore[override]
        from beam_distil.models.event_loop import run_coroutine

        kwargs = self.magpie_generation_kwargs()

        async def batch(indices: range) -> List[Dict[str, Any]]:
            return list(await asyncio.gather(*(self._generate_row(index, kwargs) for index in indices)))

        start = offset
        if start >= self.num_rows:
            yield [], True
            return
        while start < self.num_rows:
            end = min(start + self.batch_size, self.num_rows)
            yield run_coroutine(batch(range(start, end))), end >= self.num_rows
            start = end
