"""Golden renderings of every chat template llama.cpp keeps (models/templates, MIT), from
Hugging Face transformers.

candor renders chat templates with minijinja, transformers with Jinja2; this writes what
transformers' renderer (`render_jinja_template`, what `apply_chat_template` calls) makes of the
plain conversations of `make-chat-template-golden.py` and the tool conversations of
`make-tool-template-golden.py` with each template, for `chat_template::tests::
template_corpus_matches_transformers`. The conversations are written once; per template only
the rendered texts. A case the template refuses under transformers (its own
`raise_exception`, its sandbox) or whose output depends on today's date (`strftime_now`
without a system message) is left out; the templates that print today's date whatever the
messages (Llama 3.2's, gpt-oss's, Solar Open's) print the day written as `rendered_on`, and
the test renders them as on that day.

    pip install --target /tmp/hfpy transformers
    PYTHONPATH=/tmp/hfpy python3 scripts/make-template-corpus-golden.py \\
        llama.cpp/models/templates tests/fixtures/chat_templates/corpus.json

Templates from elsewhere (vLLM's tool templates, `tests/fixtures/chat_templates/extra/`) are
added to the corpus with its conversations and its day, replacing a template of the same name:

    PYTHONPATH=/tmp/hfpy python3 scripts/make-template-corpus-golden.py --add \\
        tests/fixtures/chat_templates/corpus.json tests/fixtures/chat_templates/extra/*.jinja
"""
import datetime
import importlib.util
import json
import pathlib
import sys

import transformers
from transformers.utils.chat_template_utils import render_jinja_template


def cases_of(script):
    path = pathlib.Path(__file__).with_name(script)
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


def rendered(path, conversations):
    """The corpus entry of the template at `path`: its texts per conversation."""
    template = path.read_text()
    texts = {}
    for case_id, tools, messages in conversations:
        if "strftime_now" in template and messages[0]["role"] != "system":
            continue
        kwargs = {"tools": tools} if tools else {}
        try:
            rendered, _ = render_jinja_template(
                conversations=[messages], chat_template=template, add_generation_prompt=True,
                bos_token="<BOS>", eos_token="<EOS>", **kwargs
            )
        except Exception as e:  # noqa: BLE001 - the template's own refusal
            print(f"{path.stem} {case_id}: left out ({type(e).__name__})", file=sys.stderr)
            continue
        texts[case_id] = rendered[0]
    return {"name": path.stem, "chat_template": template, "texts": texts}


def add(corpus_path, template_paths):
    """Render `template_paths` with the corpus' conversations into it, by name."""
    with open(corpus_path) as f:
        doc = json.load(f)
    conversations = [(case_id, c["tools"], c["messages"]) for case_id, c in doc["conversations"].items()]
    for path in map(pathlib.Path, template_paths):
        if "strftime_now" in path.read_text():
            sys.exit(f"{path}: prints today's date; render the whole corpus instead")
        entry = rendered(path, conversations)
        names = [t["name"] for t in doc["templates"]]
        if entry["name"] in names:
            doc["templates"][names.index(entry["name"])] = entry
        else:
            doc["templates"].append(entry)
    with open(corpus_path, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")


def main(template_dir, out_path):
    plain = [(case_id, None, messages) for case_id, messages in cases_of("make-chat-template-golden.py")]
    conversations = plain + cases_of("make-tool-template-golden.py")
    templates = [rendered(path, conversations) for path in sorted(pathlib.Path(template_dir).glob("*.jinja"))]
    doc = {
        "transformers": transformers.__version__,
        "rendered_on": datetime.date.today().isoformat(),
        "bos_token": "<BOS>",
        "eos_token": "<EOS>",
        "conversations": {case_id: {"tools": tools, "messages": messages}
                          for case_id, tools, messages in conversations},
        "templates": templates,
    }
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    if sys.argv[1] == "--add":
        add(sys.argv[2], sys.argv[3:])
    else:
        main(sys.argv[1], sys.argv[2])
