"""Golden renderings of chat templates with tools, from Hugging Face transformers.

candor renders `tools`, assistant `tool_calls` and `tool` messages with minijinja; this writes
what transformers' own renderer (`render_jinja_template`, what `apply_chat_template` calls)
makes of the same conversations, for `chat_template::tests::templates_with_tools_match_
transformers` and `tests/tool_call_round_trip.rs` (which reads the calls back out of the
assistant turns). Messages are given as OpenAI clients send them except that `arguments` are
objects, as HF templates expect (the server turns the client's JSON strings into objects before
rendering). The template comes from a tokenizer golden (its `chat_template`) or a `.jinja` file
(the vendors' templates, as llama.cpp's models/templates keeps them, MIT); a case the template
cannot render (Granite 3.3 renders no calls of its own) or whose output depends on today's date
(`strftime_now` without a system message) is left out.

    pip install --target /tmp/hfpy transformers
    PYTHONPATH=/tmp/hfpy python3 scripts/make-tool-template-golden.py \
        ../shared/fixtures/tokenizer/qwen2.5-0.5b.json tests/fixtures/chat_tools/qwen2.5-0.5b.json
    PYTHONPATH=/tmp/hfpy python3 scripts/make-tool-template-golden.py \
        llama.cpp/models/templates/Qwen3-Coder.jinja tests/fixtures/chat_tools/Qwen3-Coder.json

`--describe-parameters` gives every parameter without a description one (its name), for the
templates that print each parameter's description and fail without (Command R+'s tool use).
"""
import copy
import json
import sys

import transformers
from transformers.utils.chat_template_utils import render_jinja_template

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city <with> 'quotes' & ünïcode",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
# Arguments of several JSON types, written as text by the tag formats and read back by type.
FORECAST = {
    "type": "function",
    "function": {
        "name": "get_forecast",
        "description": "Forecast for the coming days",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "hourly": {"type": "boolean"},
                "fields": {"type": "array", "items": {"type": "string"}},
                "zip": {"type": "string"},
            },
            "required": ["city", "days"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}

CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": {"unit": "celsius", "city": "Paris"}}}
CALL2 = {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": {}}}
CALL3 = {"id": "call_3", "type": "function",
         "function": {"name": "get_forecast", "arguments": {
             "city": "São Paulo", "days": 3, "hourly": False, "fields": ["rain", "wind"],
             "zip": "01310"}}}

CASES = [
    ("tools_first_turn", [WEATHER], [{"role": "user", "content": "Weather in Paris?"}]),
    ("tools_with_system", [WEATHER, TIME], [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris and the time?"},
    ]),
    ("tool_round_trip", [WEATHER, TIME], [
        {"role": "user", "content": "Weather in Paris and the time?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL, CALL2]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
    ]),
    ("assistant_text_and_call", [WEATHER], [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "Thanks"},
    ]),
    ("typed_arguments", [WEATHER, FORECAST], [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Forecast for São Paulo?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL3]},
        {"role": "tool", "tool_call_id": "call_3", "content": "rain"},
    ]),
]


def described(tools):
    """`tools` with a description on every parameter that has none: its name."""
    tools = copy.deepcopy(tools)
    for tool in tools:
        for name, spec in tool["function"].get("parameters", {}).get("properties", {}).items():
            spec.setdefault("description", name)
    return tools


def main(source, out_path, describe=False):
    if source.endswith(".jinja"):
        template = open(source).read()
    else:
        template = json.load(open(source))["chat_template"]
    cases = []
    for case_id, tools, messages in CASES:
        if describe:
            tools = described(tools)
        if "strftime_now" in template and messages[0]["role"] != "system":
            continue
        try:
            rendered, _ = render_jinja_template(
                conversations=[messages], tools=tools, chat_template=template,
                add_generation_prompt=True
            )
        except Exception as e:  # noqa: BLE001 - a template's own refusal
            print(f"{case_id}: left out ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        cases.append({"id": case_id, "tools": tools, "messages": messages, "text": rendered[0]})
    doc = {"source": source.rsplit("/", 1)[-1], "transformers": transformers.__version__,
           "chat_template": template, "cases": cases}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    paths = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(paths[0], paths[1], describe="--describe-parameters" in flags)
