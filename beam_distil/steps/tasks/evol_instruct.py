"""``EvolInstruct`` and ``EvolInstructGenerator``: make instructions harder, one random mutation at a time (WizardLM).

Example::

    EvolInstruct(llm=OpenAILLM(model="gpt-4o-mini"), num_evolutions=2, generate_answers=True)
    # rows with `instruction` get `evolved_instruction`, `answer` and `model_name`

    EvolInstructGenerator(llm=OpenAILLM(model="gpt-4o-mini"), num_instructions=100)
    # a root step: yields rows with `instruction` and `model_name`

Each evolution sends the current instruction inside a mutation prompt picked at random from
``mutation_templates`` (the ``<PROMPT>`` placeholder stands for the instruction, as in distilabel) and keeps
the text after the last ``Prompt#:`` of the answer. The picks come from a ``random.Random`` seeded with
``seed`` and the row's content, never from global state, so a run is reproducible whatever the batching,
the worker or the order the rows arrive in.

A row needs several calls, one after another; on Beam they run on the process's event loop, so many rows
are evolved at once. A call that fails (or an empty answer) stops the row: its output columns are ``None``
and ``distilabel_metadata["error_<task name>"]`` says why.

``distilabel_metadata`` is laid out as in distilabel, with token counts only (no raw prompts or answers), one
entry per call: ``statistics_instruction_<name>`` (``{"input_tokens": [...], "output_tokens": [...]}``, the
evolution calls) or, with ``generate_answers``, ``statistics_answer_<name>`` (the answer calls). distilabel lists
the calls of the whole batch in every row; beam_distil lists the row's own calls (the generator: those that led
to the row's instruction).

References:
    - `WizardLM: Empowering Large Language Models to Follow Complex Instructions <https://arxiv.org/abs/2304.12244>`_
    - `h2oai/h2o-wizardlm <https://github.com/h2oai/h2o-wizardlm>`_
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from typing import Any, Dict, Generator, List, Mapping, Optional, Tuple, Union

from pydantic import Field, PositiveInt, field_validator

from beam_distil.helpers import compile_template, seeded_random
from beam_distil.models.base import ChatType
from beam_distil.rows import DISTILABEL_METADATA_KEY
from beam_distil.runtime_parameters import RuntimeParameter
from beam_distil.steps.base import GeneratorStepOutput, StepColumns
from beam_distil.steps.tasks.base import GeneratorTask
from beam_distil.steps.tasks.input_checks import string_column
from beam_distil.steps.tasks.sequential import ConversationRecord, NoAnswer, SequentialCallsTask, call_statistics

_logger = logging.getLogger(__name__)

PROMPT_PLACEHOLDER = "<PROMPT>"

REWRITE_TEMPLATE = """\
You rewrite prompts to make them more demanding for strong AI assistants such as ChatGPT or GPT-4.
The rewritten prompt must still make sense, and a person must be able to understand and answer it.
Keep every non-text part of the original prompt (tables, code, inputs) in the rewritten one.
How to make it harder: {{ method }}
Add no more than 10 to 20 words; do not let the rewritten prompt become verbose.
Never write '#The Given Prompt#', '#Rewritten Prompt#', 'given prompt' or 'rewritten prompt' in your answer.
#The Given Prompt#:
<PROMPT>
#Rewritten Prompt#:
"""

CREATE_TEMPLATE = """\
You invent new prompts, taking the prompt below as inspiration.
The new prompt belongs to the same domain but is about something rarer.
It should be about as long and as complex as the prompt it comes from, make sense, and be answerable by a person.
Never write '#Given Prompt#', '#Created Prompt#', 'given prompt' or 'created prompt' in your answer.
#Given Prompt#:
<PROMPT>
#Created Prompt#:
"""

FRESH_START_TEMPLATE = "Write one question or request containing one or more of the following words: <PROMPT>"

_METHODS = {
    "CONSTRAINTS": "add one more constraint or requirement to the prompt.",
    "DEEPENING": "if the prompt asks about some issue, ask about it in more depth and breadth.",
    "CONCRETIZING": "replace general concepts with more specific ones.",
    "INCREASED_REASONING_STEPS": (
        "if the prompt can be solved with a few simple steps of thinking, ask explicitly for reasoning in several steps."
    ),
}


def _rewrite(method: str) -> str:
    return compile_template(REWRITE_TEMPLATE).render(method=method)


MUTATION_TEMPLATES: Dict[str, str] = {
    **{name: _rewrite(method) for name, method in _METHODS.items()},
    "BREADTH": CREATE_TEMPLATE,
}
"""``EvolInstruct``'s mutations (``<PROMPT>`` stands for the instruction)."""

GENERATION_MUTATION_TEMPLATES: Dict[str, str] = {"FRESH_START": FRESH_START_TEMPLATE, **MUTATION_TEMPLATES}
"""``EvolInstructGenerator``'s mutations: ``FRESH_START`` (``<PROMPT>`` stands for a few seed words) and the rest."""

# Seed words for EvolInstructGenerator's fresh starts.
ENGLISH_NOUNS: List[str] = """
account acid age air animal answer apple art baby balance ball bank bird blood boat body bone book brain bread
bridge brother building butter camera card cat chain chair cheese chess city cloud coal coat coffee color computer
copper cotton country cup dance day desert door dream earth egg energy engine family farm fire fish flower food
forest friend fruit game garden glass gold government grass guitar hair harbor health heart history horse hospital
house ice idea island jewel journey key kitchen knowledge language law library light machine map market metal milk
money moon mountain music nation needle network ocean oil orange paint paper party pencil picture planet plant poem
police river road robot rocket salt school science sea seed ship shoe silver sky snow song space sport star stone
story street sugar sun table tea theory ticket tiger time tool town train tree umbrella university valley village
violin voice volcano water weather wheel wind window wine winter wood word world
""".split()


def parse_evolved_instruction(output: Optional[str]) -> Optional[str]:
    """The evolved instruction in an LLM answer: the text after the last ``Prompt#:`` (the whole answer when
    there is none), stripped. ``None`` for no answer or an empty one."""
    if output is None:
        return None
    text = output.split("Prompt#:")[-1].strip()
    return text or None


def fill_placeholders(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each placeholder (``<PROMPT>``, ``<RESPONSE>``) replaced in one pass, so that a
    placeholder written inside a value is left as it is."""
    pattern = re.compile("|".join(re.escape(key) for key in values))
    return pattern.sub(lambda match: values[match.group(0)], template)


def check_mutation_templates(templates: Dict[str, str], placeholders: List[str]) -> Dict[str, str]:
    """``templates`` when each (but ``FRESH_START``) has every placeholder; else a ``ValueError`` naming it."""
    if not templates:
        raise ValueError("mutation_templates must hold at least one template")
    for name, template in templates.items():
        if name == "FRESH_START":
            continue
        missing = [p for p in placeholders if p not in template]
        if missing:
            raise ValueError(f"mutation template {name!r} has no {missing[0]} placeholder")
    return templates


class EvolInstruct(SequentialCallsTask):
    """Evolves each ``instruction`` ``num_evolutions`` times, each time with a randomly picked mutation.

    Attributes:
        num_evolutions: how many evolutions each instruction goes through.
        store_evolutions: keep every evolved instruction (``evolved_instructions``) instead of the last one.
        generate_answers: also answer the evolved instruction(s) (one more call per instruction).
        include_original_instruction: with ``store_evolutions``, start the list with the original instruction.
        mutation_templates: name -> prompt with a ``<PROMPT>`` placeholder for the instruction.
        seed: seeds the mutation picks, together with the row's instruction.

    Input columns:
        - instruction (``str``): the instruction to evolve.

    Output columns:
        - evolved_instruction (``str``) or, with ``store_evolutions``, evolved_instructions (``List[str]``).
        - answer (``str``) or answers (``List[str]``): with ``generate_answers``.
        - model_name (``str``).
    """

    num_evolutions: PositiveInt
    store_evolutions: bool = False
    generate_answers: bool = False
    include_original_instruction: bool = False
    mutation_templates: Dict[str, str] = Field(default_factory=lambda: dict(MUTATION_TEMPLATES))
    seed: RuntimeParameter[int] = Field(default=42, description="Seeds the random choice of mutations.")

    @field_validator("mutation_templates")
    @classmethod
    def _check_mutation_templates(cls, templates: Dict[str, str]) -> Dict[str, str]:
        return check_mutation_templates(templates, [PROMPT_PLACEHOLDER])

    @property
    def mutation_templates_names(self) -> List[str]:
        return list(self.mutation_templates)

    @property
    def inputs(self) -> StepColumns:
        return ["instruction"]

    @property
    def outputs(self) -> StepColumns:
        columns = ["evolved_instructions" if self.store_evolutions else "evolved_instruction", "model_name"]
        if self.generate_answers:
            columns.append("answers" if self.store_evolutions else "answer")
        return columns

    def _instruction(self, input: Dict[str, Any]) -> str:
        return string_column(input, "instruction")

    def _mutate(self, instruction: str, rng: random.Random) -> ChatType:
        mutation = rng.choice(self.mutation_templates_names)
        content = fill_placeholders(self.mutation_templates[mutation], {PROMPT_PLACEHOLDER: instruction})
        return [{"role": "user", "content": content}]

    def format_input(self, input: Union[str, Dict[str, Any]]) -> ChatType:  # type: ignore[override]
        """A string is sent as the user message (as distilabel); a row gives its first mutation prompt."""
        if isinstance(input, str):
            return [{"role": "user", "content": input}]
        instruction = self._instruction(input)
        return self._mutate(instruction, seeded_random(self.seed, instruction))

    def format_output(  # type: ignore[override]
        self, instructions: Union[str, List[Optional[str]], None], answers: Optional[List[Optional[str]]] = None
    ) -> Dict[str, Any]:
        """The output columns from the (already parsed) evolved instructions and, optionally, their answers,
        as in distilabel; ``None`` gives ``None`` columns."""
        if isinstance(instructions, str):
            instructions = [instructions]
        output: Dict[str, Any] = {}
        if self.store_evolutions:
            output["evolved_instructions"] = list(instructions) if instructions else None
        else:
            output["evolved_instruction"] = instructions[-1] if instructions else None
        if self.generate_answers:
            if self.store_evolutions:
                output["answers"] = list(answers) if answers else None
            else:
                output["answer"] = answers[-1] if answers else None
        return output

    def failed_output(self, input: Dict[str, Any]) -> Dict[str, Any]:
        return self.format_output(None)

    def conversation_metadata(self, record: ConversationRecord) -> Dict[str, Any]:
        """distilabel's layout: ``statistics_instruction_<name>`` (the tokens of each evolution call) or, with
        ``generate_answers``, only ``statistics_answer_<name>`` (those of each answer call)."""
        if self.generate_answers:
            return {f"statistics_answer_{self.name}": call_statistics(record, slice(self.num_evolutions, None))}
        return {f"statistics_instruction_{self.name}": call_statistics(record)}

    def conversation(self, input: Dict[str, Any]) -> Generator[ChatType, str, Dict[str, Any]]:
        instruction = self._instruction(input)
        rng = seeded_random(self.seed, instruction)
        evolutions: List[str] = []
        current = instruction
        for number in range(self.num_evolutions):
            answer = yield self._mutate(current, rng)
            evolved = parse_evolved_instruction(answer)
            if evolved is None:
                raise NoAnswer(f"evolution {number + 1} gave an empty instruction")
            evolutions.append(evolved)
            current = evolved
        if self.store_evolutions:
            kept = ([instruction] if self.include_original_instruction else []) + evolutions
        else:
            kept = [evolutions[-1]]
        answers: Optional[List[str]] = None
        if self.generate_answers:
            answers = []
            for evolved in kept:
                answers.append((yield [{"role": "user", "content": evolved}]))
        return self.format_output(kept, answers)


class EvolInstructGenerator(GeneratorTask):
    """Generates ``num_instructions`` instructions from scratch, evolving them until they are long enough.

    Every slot starts from a ``FRESH_START`` prompt (a few random seed words); its answer is evolved with random
    mutations until its length (in characters) is within ``[min_length, max_length]``, then the slot starts
    afresh. A random pick of ``FRESH_START`` also restarts a slot. Rows are yielded as they are accepted.

    Attributes:
        llm: the LLM that writes and evolves the instructions (loaded in ``load()``).
        num_instructions: how many instructions to generate.
        generate_answers: also answer every instruction (at the end, in one last batch).
        mutation_templates: name -> prompt with a ``<PROMPT>`` placeholder (``FRESH_START`` gets seed words).
        min_length, max_length: the accepted length of an instruction, in characters.
        seed: seeds every random choice (seed words, mutations).
        max_rounds: beam_distil's guard against an LLM that never gets within the length bounds: after this
            many rounds the step stops, with fewer rows, and logs a warning (distilabel loops forever).

    Output columns:
        - instruction (``str``), answer (``str``, with ``generate_answers``), model_name (``str``).
        - distilabel_metadata: ``statistics_instruction_<name>``, the tokens of each call that led to the row's
          instruction (from its fresh start), or, with ``generate_answers``, ``statistics_answer_<name>``, those
          of its answer call.
    """

    num_instructions: PositiveInt
    generate_answers: bool = False
    mutation_templates: Dict[str, str] = Field(default_factory=lambda: dict(GENERATION_MUTATION_TEMPLATES))
    min_length: RuntimeParameter[int] = Field(default=512, description="Shortest accepted instruction (characters).")
    max_length: RuntimeParameter[int] = Field(default=1024, description="Longest accepted instruction (characters).")
    seed: RuntimeParameter[int] = Field(default=42, description="Seeds the seed words and the choice of mutations.")
    max_rounds: RuntimeParameter[PositiveInt] = Field(
        default=100, description="Most rounds of evolution before giving up on the missing instructions."
    )

    @field_validator("mutation_templates")
    @classmethod
    def _check_mutation_templates(cls, templates: Dict[str, str]) -> Dict[str, str]:
        return check_mutation_templates(templates, [PROMPT_PLACEHOLDER])

    @property
    def mutation_templates_names(self) -> List[str]:
        return list(self.mutation_templates)

    @property
    def outputs(self) -> StepColumns:
        columns = ["instruction", "model_name"]
        if self.generate_answers:
            columns.append("answer")
        return columns

    def format_output(self, instruction: str, answer: Optional[str] = None) -> Dict[str, Any]:
        output: Dict[str, Any] = {"instruction": instruction, "model_name": self.llm.model_name}
        if self.generate_answers:
            output["answer"] = answer
        return output

    def _seed_text(self, rng: random.Random) -> str:
        words = ", ".join(rng.choice(ENGLISH_NOUNS) for _ in range(rng.choice([1, 2, 3, 4])))
        template = self.mutation_templates.get("FRESH_START", FRESH_START_TEMPLATE)
        return fill_placeholders(template, {PROMPT_PLACEHOLDER: words})

    def _generate_each(self, prompts: List[ChatType]) -> List[Tuple[Optional[str], int, int]]:
        """``(answer, input tokens, output tokens)`` per prompt; ``(None, 0, 0)`` where the call failed (logged),
        so one failure loses one slot's turn."""
        from beam_distil.beam.llm_calls import call_llm, describe_error
        from beam_distil.models.event_loop import run_coroutine

        kwargs = dict(self.llm.generation_kwargs or {})
        llm = self.llm

        async def one(prompt: ChatType) -> Tuple[Optional[str], int, int]:
            outcome = await call_llm(llm, prompt, 1, kwargs)
            if outcome.error is not None:
                _logger.warning("%s: a call failed: %s", self.name, describe_error(outcome.error, llm))
                return None, 0, 0
            output = outcome.output
            text = output["generations"][0] if output["generations"] else None
            return text, sum(output["statistics"]["input_tokens"]), sum(output["statistics"]["output_tokens"])

        async def all_of_them() -> List[Tuple[Optional[str], int, int]]:
            return list(await asyncio.gather(*(one(prompt) for prompt in prompts)))

        return run_coroutine(all_of_them())

    def _with_statistics(self, row: Dict[str, Any], key: str, calls: List[Tuple[int, int]]) -> Dict[str, Any]:
        statistics = {"input_tokens": [c[0] for c in calls], "output_tokens": [c[1] for c in calls]}
        return {**row, DISTILABEL_METADATA_KEY: {f"{key}_{self.name}": statistics}}

    def process(self, offset: int = 0) -> GeneratorStepOutput:  # type: ignore[override]
        rng = random.Random(self.seed)
        count = self.num_instructions
        seed_texts = [self._seed_text(rng) for _ in range(count * 10)]
        slots = [rng.choice(seed_texts) for _ in range(count)]
        fresh = [True] * count  # a fresh slot holds a FRESH_START prompt, sent as it is
        # The (input, output) tokens of each call of a slot's current chain, from its fresh start on.
        chains: List[List[Tuple[int, int]]] = [[] for _ in range(count)]
        names = self.mutation_templates_names
        instructions: List[str] = []
        emitted = 0

        def take(rows: List[Dict[str, Any]], last: bool) -> GeneratorStepOutput:
            nonlocal emitted
            start = max(0, offset - emitted)
            emitted += len(rows)
            yield rows[start:], last

        for round_number in range(self.max_rounds):
            prompts: List[ChatType] = []
            for index in range(count):
                if not fresh[index]:
                    mutation = rng.choice(names)
                    if mutation == "FRESH_START":
                        slots[index], fresh[index], chains[index] = rng.choice(seed_texts), True, []
                    else:
                        content = fill_placeholders(self.mutation_templates[mutation], {PROMPT_PLACEHOLDER: slots[index]})
                        prompts.append([{"role": "user", "content": content}])
                        continue
                prompts.append([{"role": "user", "content": slots[index]}])
            accepted: List[Tuple[str, List[Tuple[int, int]]]] = []
            for index, (answer, input_tokens, output_tokens) in enumerate(self._generate_each(prompts)):
                chains[index].append((input_tokens, output_tokens))
                text = parse_evolved_instruction(answer)
                if text is not None and self.min_length <= len(text) <= self.max_length:
                    accepted.append((text, chains[index]))
                if text is None or self.min_length <= len(text) <= self.max_length:
                    slots[index], fresh[index], chains[index] = rng.choice(seed_texts), True, []
                else:
                    slots[index], fresh[index] = text, False
            accepted = accepted[: count - len(instructions)]
            instructions.extend(text for text, _ in accepted)
            done = len(instructions) >= count
            _logger.info("%s: round %d, %d/%d instructions", self.name, round_number, len(instructions), count)
            if not self.generate_answers and (accepted or done):
                rows = [
                    self._with_statistics(self.format_output(text), "statistics_instruction", calls)
                    for text, calls in accepted
                ]
                yield from take(rows, done)
            if done:
                break
        else:
            _logger.warning(
                "%s: stopped after max_rounds=%d with %d of %d instructions; widen min_length/max_length or raise"
                " max_rounds.",
                self.name,
                self.max_rounds,
                len(instructions),
                count,
            )
            if not self.generate_answers:
                yield [], True
        if self.generate_answers:
            prompts = [[{"role": "user", "content": text}] for text in instructions]
            answers = self._generate_each(prompts) if prompts else []
            rows = [
                self._with_statistics(self.format_output(text, answer), "statistics_answer", [(input_tokens, output_tokens)])
                for text, (answer, input_tokens, output_tokens) in zip(instructions, answers)
            ]
            yield from take(rows, True)
