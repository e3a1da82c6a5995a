"""safetensors export under the original PyTorch names, plus a loss-curve plot."""
import json
import os
import struct

import torch


def save_safetensors(tensors, path):
    """f32 safetensors; uses the safetensors package when present, else writes the (simple,
    documented) format directly so that a bare torch install can export too."""
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}
    tmp = path + ".tmp"
    try:
        from safetensors.torch import save_file

        save_file(tensors, tmp)
    except ImportError:
        header, offset, blobs = {}, 0, []
        for k in sorted(tensors):
            b = tensors[k].numpy().tobytes()
            header[k] = {"dtype": "F32", "shape": list(tensors[k].shape), "data_offsets": [offset, offset + len(b)]}
            offset += len(b)
            blobs.append(b)
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for b in blobs:
                f.write(b)
    os.replace(tmp, path)


def plot_losses(rows, path, title):
    """rows: list of (step, loss); a smoothed curve as PNG (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    steps = [r[0] for r in rows]
    loss = [r[1] for r in rows]
    smooth, s = [], None
    for v in loss:
        s = v if s is None else 0.98 * s + 0.02 * v
        smooth.append(s)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, loss, color="0.8", lw=0.5, label="per step")
    ax.plot(steps, smooth, color="C0", lw=1.5, label="EMA 0.98")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def recent_loss(rows, n):
    """Mean loss (second column) of the last n logged steps; 0 before the first step."""
    recent = [r[1] for r in rows[-n:]]
    return sum(recent) / max(1, len(recent))


def log_progress(step, rows, seconds):
    """Every 50 steps: the mean loss of those 50 and their seconds per step (the run's average
    would mix in earlier phases of other batch or crop sizes)."""
    if step % 50 == 0:
        last_step, last_seconds = getattr(log_progress, "last", (None, None))
        rate = (seconds - last_seconds) / (step - last_step) if last_step is not None else None
        log_progress.last = (step, seconds)
        shown = f"{rate:.2f} s/step" if rate is not None else "first report"
        print(f"step {step} loss {recent_loss(rows, 50):.4f} ({shown})", flush=True)
