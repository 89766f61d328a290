import json, os, sys, time
from pathlib import Path
os.environ.setdefault("EDGEKD_CACHE", "/work/kdcmp2/cache")
import torch
torch.set_num_threads(1)
from edgekd.config import TrainConfig
from edgekd.distill.run import train_teacher
arch, epochs, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = Path("/work/kdcmp2/teachers") / f"{name}.pt"
cfg = TrainConfig(epochs=epochs, augment="standard", warmup_epochs=2.0, lr=1e-3, seed=0, device="cpu", threads=1)
t = time.time()
res = train_teacher(arch, "fashion-mnist", out, cfg, resume=out.with_suffix(".pt").exists() or True, store=out.parent / "edgekd.sqlite", progress=False)
rec = {"arch": arch, "epochs": epochs, "test_accuracy": res.test_accuracy, "seconds": time.time() - t, "cfg": cfg.model_dump()}
Path(out.with_suffix(".json")).write_text(json.dumps(rec, indent=2, default=str))
print(rec)
