"""What the in-process backends (``TransformersLLM``, ``vLLM``) share: the prompt text of a conversation, and a
seed per prompt so that a row's answers do not depend on what ran before or beside it.

Example::

    prompt = render_chat(tokenizer, [{"role": "user", "content": "Hi"}])   # the model's chat template
    seed = prompt_seed(42, None, prompt)                                    # the same for the same prompt
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, Optional

from beam_distil.models.base import FormattedInput


CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""The template used when neither ``chat_template`` nor the tokenizer has one (as distilabel does)."""


def render_chat(tokenizer: Any, messages: List[Dict[str, Any]]) -> str:
    """The prompt text of a conversation: the tokenizer's chat template with the generation prompt appended."""
    template = getattr(tokenizer, "chat_template", None) or CHATML_TEMPLATE
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)


def prompt_seed(base_seed: int, call_seed: Optional[int], input: FormattedInput) -> int:
    """A 32-bit seed from the model's seed, the call's seed and the prompt: the same row gets the same answers
    whatever ran before it or beside it."""
    text = input if isinstance(input, str) else json.dumps(input, sort_keys=True)
    digest = hashlib.sha256(f"{base_seed}:{call_seed}:{text}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:4], "big")
