"""What resuming from a cached ``H_k`` costs, against the whole forward, on random models of several families.

    python benchmarks/resume_cost.py [--families llama gpt_neox gemma2 falcon] [--layers 8] [--hidden 256]

`SplitModel.resume` runs the stock forward with layers ``1..k`` made pass-through, so it should cost the suffix's
share of the forward, about ``(L - k) / L`` (plus the embedding, final norm and head, small here: vocabulary 512), and
the pass-through layers nothing: at ``k = L`` only the embedding, norm and head are left. Models are built from
configs with random weights (nothing downloaded); ``[4, 256]`` tokens, float32, one thread, fastest of ``--repeats``
runs with the modes interleaved so a noisy neighbour slows both alike.
"""

from __future__ import annotations

import argparse
import platform
from datetime import date

import torch
from timing import best


def build(family: str, layers: int, hidden: int):
    import transformers as tf

    from llmsplit_env.llm.model import attention_implementation

    common = {"vocab_size": 512, "max_position_embeddings": 512, "bos_token_id": 0, "eos_token_id": 0}
    base = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": hidden // 64}
    configs = {
        "llama": lambda: tf.LlamaConfig(**base, intermediate_size=4 * hidden, **common),
        "gpt_neox": lambda: tf.GPTNeoXConfig(**base, intermediate_size=4 * hidden, **common),
        "gemma2": lambda: tf.Gemma2Config(**base, intermediate_size=4 * hidden, head_dim=64, **common),
        "falcon": lambda: tf.FalconConfig(**base, **common),
        "phi3": lambda: tf.Phi3Config(**base, intermediate_size=4 * hidden, pad_token_id=0, **common),
    }
    config = configs[family]()
    torch.manual_seed(0)
    lm = tf.AutoModelForCausalLM.from_config(config, attn_implementation=attention_implementation(config))
    return lm.eval().requires_grad_(False)


def main() -> None:
    from llmsplit_env.llm import split_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=["llama", "gpt_neox", "gemma2", "falcon"])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    L = args.layers
    splits = sorted({1, L // 4, L // 2, 3 * L // 4, L - 1, L} - {0})
    print(f"# resume_cost: L = {L}, d = {args.hidden}, [4, 256] tokens, float32, {args.threads} thread(s), "
          f"{date.today()}, {platform.processor() or platform.machine()}")  # fmt: skip
    print("| family | full forward s | " + " | ".join(f"k={k}" for k in splits) + " |")
    print("|---|---|" + "---|" * len(splits))
    print("| (L-k)/L | | " + " | ".join(f"{(L - k) / L:.3f}" for k in splits) + " |")
    for family in args.families:
        model = split_model(build(family, L, args.hidden))
        ids = torch.randint(0, 512, (4, 256), generator=torch.Generator().manual_seed(0))
        h = model.hidden_states(ids)
        model.logits(ids)  # warm-up
        full, ratios = [], []
        for k in splits:
            runs = {"whole": lambda model=model, ids=ids: model.logits(ids),
                    "resume": lambda model=model, ids=ids, h=h, k=k: model.resume(h[k], k, ids)}  # fmt: skip
            t = {"whole": [], "resume": []}
            for r in range(args.repeats):  # interleaved, fastest of each
                for mode in ("whole", "resume") if r % 2 == 0 else ("resume", "whole"):
                    t[mode].append(best(runs[mode], 1))
            full.append(min(t["whole"]))
            ratios.append(min(t["resume"]) / min(t["whole"]))
        print(f"| {family} | {min(full):.3f} | " + " | ".join(f"{x:.3f}" for x in ratios) + " |")


if __name__ == "__main__":
    main()
