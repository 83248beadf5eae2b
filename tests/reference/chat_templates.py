"""Chat templates of the new architectures rendered by transformers' `apply_chat_template` and split
by TRL's own `apply_chat_template` (data_utils: prompt with the generation prompt, completion = what the
full conversation adds after their common prefix), for tests/engine/templates.rs.

Templates: Qwen3-0.6B, Llama-3.2-3B-Instruct and Qwen2.5-7B-Instruct as llama.cpp keeps them
(models/templates/, taken from the llama-cpp-python sdist on PyPI, pinned below: no model hub is
reachable here), and Gemma 3's (gemma-3-*-it tokenizer_config.json), written out below. The date
that Llama 3's template asks `strftime_now` for is fixed (2026-01-15) so the golden is stable; the
engine test renders at the same date.

Run (needs transformers 5.24, trl 1.16; downloads ~77 MB once):  python tests/reference/chat_templates.py
"""
import datetime as _dt
import json
import os
import tarfile
import urllib.request

import transformers.utils.chat_template_utils as ctu
from transformers import PreTrainedTokenizerFast

import random_configs as rc

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "templates", "templates.json")
SDIST = ("https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/"
         "llama_cpp_python-0.3.36.tar.gz")
CACHE = os.path.expanduser("~/.cache/kto-studio/llama_cpp_python-0.3.36.tar.gz")
FROM_SDIST = {
    "qwen3": ("Qwen-Qwen3-0.6B.jinja", None, "<|im_end|>"),
    "llama3": ("meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    "qwen2.5": ("Qwen-Qwen2.5-7B-Instruct.jinja", None, "<|im_end|>"),
}
GEMMA3 = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

SYSTEM = {"role": "system", "content": "You are a terse assistant."}
CONVERSATIONS = [
    ([{"role": "user", "content": "What is 2 + 2?"}], True),
    ([SYSTEM, {"role": "user", "content": "  Name a colour.  "}], True),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
      {"role": "user", "content": "Tell me a joke about cats."}], True),
    ([SYSTEM, {"role": "user", "content": "Café? ✓"}, {"role": "assistant", "content": "Oui."}], False),
]
SPLITS = [
    ([{"role": "user", "content": "What is 2 + 2?"}], "4"),
    ([SYSTEM, {"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"},
      {"role": "user", "content": "Again, louder"}], "HI!"),
]


class FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 1, 15, 12, 0, 0)


def templates():
    if not os.path.exists(CACHE):
        os.makedirs(os.path.dirname(CACHE), exist_ok=True)
        urllib.request.urlretrieve(SDIST, CACHE)
    out = {}
    with tarfile.open(CACHE) as tar:
        for name, (file, bos, eos) in FROM_SDIST.items():
            member = f"llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/{file}"
            out[name] = (tar.extractfile(member).read().decode("utf-8"), bos, eos, f"llama.cpp models/templates/{file}")
    out["gemma3"] = (GEMMA3, "<bos>", "<eos>", "gemma-3 -it tokenizer_config.json")
    return out


def main():
    from trl.data_utils import apply_chat_template as trl_apply

    ctu.datetime = FixedDatetime  # strftime_now() renders 15 Jan 2026
    golden = {"generated_by": "tests/reference/chat_templates.py", "date": [2026, 1, 15], "models": {}}
    for name, (template, bos, eos, source) in templates().items():
        tok = rc.byte_tokenizer()
        tok = PreTrainedTokenizerFast(tokenizer_object=tok._tokenizer, bos_token=bos, eos_token=eos,
                                      chat_template=template)
        cases = [{"messages": m, "add_generation_prompt": g,
                  "rendered": tok.apply_chat_template(m, tokenize=False, add_generation_prompt=g)}
                 for m, g in CONVERSATIONS]
        splits = []
        for prompt, completion in SPLITS:
            r = trl_apply({"prompt": prompt, "completion": [{"role": "assistant", "content": completion}]}, tok)
            splits.append({"prompt": prompt, "completion": completion, "trl_prompt": r["prompt"],
                           "trl_completion": r["completion"]})
        golden["models"][name] = {"source": source, "template": template, "bos": bos, "eos": eos, "cases": cases,
                                  "splits": splits}
        print(name, repr(splits[0]["trl_completion"]))
    golden["versions"] = {"transformers": __import__("transformers").__version__, "trl": __import__("trl").__version__}
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
