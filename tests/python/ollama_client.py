"""The official `ollama` Python client against a running candor server's Ollama API.

Usage: python3 ollama_client.py BASE_URL MODEL
Exits non-zero (with an assertion message) on the first thing that does not work.
"""
import json
import sys

import ollama

base, model = sys.argv[1], sys.argv[2]
client = ollama.Client(host=base)
greedy = {"temperature": 0, "num_predict": 12}

# The model, listed and described.
listed = client.list()
assert [m.model for m in listed.models] == [f"{model}:latest"], listed
details = listed.models[0].details
assert details.family == "qwen2" and details.quantization_level == "Q4_K_M", details
shown = client.show(model)
assert "tools" in shown.capabilities and "completion" in shown.capabilities, shown
assert "im_start" in shown.template
assert client.ps().models[0].context_length > 0

# A chat, whole and streamed: the same greedy text.
ask = [{"role": "user", "content": "What is the capital of France? One word."}]
whole = client.chat(model=model, messages=ask, options=greedy)
assert whole.done and "Paris" in whole.message.content, whole
assert whole.eval_count > 0 and whole.prompt_eval_count > 0, whole
parts = list(client.chat(model=model, messages=ask, options=greedy, stream=True))
assert parts[-1].done and parts[-1].done_reason in ("stop", "length"), parts[-1]
assert "".join(p.message.content for p in parts) == whole.message.content

# A tool call, its arguments as a dict, and the result sent back.
def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
      city: The city
    """
    return json.dumps({"temperature_c": 21, "sky": "sunny"})

weather = [{"role": "user", "content": "What is the weather like in Paris today?"}]
called = client.chat(model=model, messages=weather, tools=[get_weather],
                     options={"temperature": 0, "num_predict": 60})
calls = called.message.tool_calls
assert calls and calls[0].function.name == "get_weather", called
assert calls[0].function.arguments == {"city": "Paris"}, calls
answer = client.chat(
    model=model,
    messages=weather + [called.message,
                        {"role": "tool", "tool_name": "get_weather", "content": get_weather("Paris")}],
    tools=[get_weather], options={"temperature": 0, "num_predict": 40})
assert answer.done, answer

# Structured output from a JSON schema.
schema = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]}
structured = client.chat(model=model, messages=ask, format=schema,
                         options={"temperature": 0, "num_predict": 40})
assert "capital" in json.loads(structured.message.content), structured

# Generate, templated and raw.
generated = client.generate(model=model, prompt="What is the capital of France? One word.",
                            options=greedy)
assert generated.response == whole.message.content, (generated, whole)
raw = client.generate(model=model, prompt="1, 2, 3, 4,", raw=True, options={"temperature": 0, "num_predict": 6})
assert "5" in raw.response, raw

# Embeddings.
vectors = client.embed(model=model, input=["The cat sat on the mat.", "fn main() {}"])
assert len(vectors.embeddings) == 2 and len(vectors.embeddings[0]) > 0, vectors
assert abs(sum(x * x for x in vectors.embeddings[0]) - 1.0) < 1e-3
legacy = client.embeddings(model=model, prompt="The cat sat on the mat.")
assert len(legacy.embedding) == len(vectors.embeddings[0])

# Errors: a model the server does not serve.
try:
    client.chat(model="llama3", messages=ask)
except ollama.ResponseError as e:
    assert e.status_code == 404 and "does not exist" in e.error, e
else:
    raise AssertionError("an unknown model was served")

print("ollama client: ok")
