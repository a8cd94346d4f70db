"""Golden renderings of model families' chat templates, from Hugging Face transformers.

candor renders chat templates with minijinja; this writes what transformers' own renderer
(`render_jinja_template`, what `apply_chat_template` calls) makes of a few conversations with
each template given, for `chat_template::tests::family_templates_match_transformers`. The
templates are the model vendors' (as llama.cpp's repository keeps them under models/templates);
a case whose output depends on today's date (a template calling `strftime_now` when no system
message is given) is left out.

    python3 scripts/make-chat-template-golden.py OUT.json TEMPLATE.jinja [TEMPLATE.jinja ...]
"""
import json
import pathlib
import sys

import transformers
from transformers.utils.chat_template_utils import render_jinja_template

CASES = [
    ("single_turn", [{"role": "user", "content": "Hello there!"}]),
    ("system_and_turns", [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a color."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another, with 'quotes' & ünïcode <tags>?"},
    ]),
]


def main(out_path, templates):
    families = []
    for path in templates:
        template = pathlib.Path(path).read_text()
        cases = []
        for case_id, messages in CASES:
            dated = "strftime_now" in template and messages[0]["role"] != "system"
            if dated:
                continue
            rendered, _ = render_jinja_template(
                conversations=[messages], chat_template=template, add_generation_prompt=True
            )
            cases.append({"id": case_id, "messages": messages, "text": rendered[0]})
        families.append({"name": pathlib.Path(path).stem, "chat_template": template, "cases": cases})
    doc = {"transformers": transformers.__version__, "families": families}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
