"""What transformers and llama.cpp make of a selfemo export (run by cli/tests/export.rs).

Reads a JSON request from the file named by argv[1] and prints a JSON answer:
  hf_dir + conversations -> AutoTokenizer's apply_chat_template ids, and its eos/pad tokens;
  gguf + prompts (token ids) + n_tokens + eos -> llama.cpp's greedy continuation of each
  prompt, and the top-5 next-token (id, logit) pairs after each prompt.
"""

import json
import sys

request = json.load(open(sys.argv[1]))
answer = {}

if "hf_dir" in request:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(request["hf_dir"])
    answer["chat_ids"] = [
        list(tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
        for c in request["conversations"]
    ]
    answer["eos_token"], answer["eos_token_id"] = tok.eos_token, tok.eos_token_id
    answer["pad_token"], answer["pad_token_id"] = tok.pad_token, tok.pad_token_id

if "gguf" in request:
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=request["gguf"], n_ctx=1024, n_threads=2, logits_all=True, verbose=False)
    eos = set(request["eos"])
    greedy, top5 = [], []
    for prompt in request["prompts"]:
        llm.reset()
        llm.eval(prompt)
        first = np.array(llm.scores[len(prompt) - 1])
        order = np.argsort(-first)[:5]
        top5.append([[int(i), float(first[i])] for i in order])
        out = []
        for _ in range(request["n_tokens"]):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(token)
            if token in eos:
                break
            llm.eval([token])
        greedy.append(out)
    answer["greedy"], answer["top5"] = greedy, top5

print(json.dumps(answer))
