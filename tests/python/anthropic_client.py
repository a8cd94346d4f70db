"""The official `anthropic` client against a running candor server's Messages API.

Usage: python3 anthropic_client.py BASE_URL MODEL API_KEY
Exits non-zero (with an assertion message) on the first thing that does not work.
"""
import json
import sys

import anthropic

base, model, key = sys.argv[1], sys.argv[2], sys.argv[3]
client = anthropic.Anthropic(base_url=base, api_key=key)
# Current clients have no `temperature` argument; greedy answers keep the checks exact.
greedy = {"extra_body": {"temperature": 0}}

# A message.
msg = client.messages.create(
    model=model,
    max_tokens=8,
    system="Answer in one word.",
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    **greedy,
)
assert msg.type == "message" and msg.role == "assistant", msg
assert "Paris" in msg.content[0].text, msg
assert msg.stop_reason in ("end_turn", "max_tokens"), msg.stop_reason
assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0, msg.usage

# Streamed, through the client's own accumulating helper.
with client.messages.stream(
    model=model,
    max_tokens=12,
    messages=[{"role": "user", "content": "Count from 1 to 5."}],
    **greedy,
) as stream:
    pieces = list(stream.text_stream)
    final = stream.get_final_message()
assert pieces and "".join(pieces) == final.content[0].text, (pieces, final)
assert final.usage.output_tokens == 12 or final.stop_reason == "end_turn", final

# A tool call, and its result sent back.
weather = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ask = [{"role": "user", "content": "What's the weather like in Paris today?"}]
called = client.messages.create(
    model=model, max_tokens=60, tools=[weather], tool_choice={"type": "any"}, messages=ask, **greedy
)
assert called.stop_reason == "tool_use", called
use = next(b for b in called.content if b.type == "tool_use")
assert use.name == "get_weather" and use.input["city"] == "Paris", use
answered = client.messages.create(
    model=model,
    max_tokens=30,
    tools=[weather],
    tool_choice={"type": "none"},
    messages=ask
    + [
        {"role": "assistant", "content": [b.model_dump() for b in called.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "21 C, sunny"}]},
    ],
    **greedy,
)
assert answered.content and answered.content[0].type == "text", answered

# Structured outputs (output_config.format).
shaped = client.messages.create(
    model=model,
    max_tokens=60,
    messages=[{"role": "user", "content": "Describe Paris as JSON."}],
    output_config={"format": {"type": "json_schema", "schema": {
        "type": "object", "properties": {"country": {"type": "string", "maxLength": 20}},
        "required": ["country"], "additionalProperties": False}}},
    **greedy,
)
assert isinstance(json.loads(shaped.content[0].text)["country"], str), shaped

# Token counting.
counted = client.messages.count_tokens(model=model, messages=ask, tools=[weather])
assert counted.input_tokens > 0, counted

# Errors are the client's typed exceptions.
try:
    client.messages.create(model=model, max_tokens=4, messages=[])
except anthropic.BadRequestError as e:
    assert e.status_code == 400, e
else:
    raise AssertionError("empty messages were accepted")
try:
    anthropic.Anthropic(base_url=base, api_key="wrong").messages.create(
        model=model, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    )
except anthropic.AuthenticationError:
    pass
else:
    raise AssertionError("a wrong key was accepted")

print("anthropic client: ok")
