"""A tiny stand-in for a training script: reads its arguments, "trains" for a few
epochs, writes metrics to stdout (which the runner keeps in output/output) and a model
file into the modeldir artifact (which the runner stores when the experiment ends)."""
import json
import os
import sys

epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 3
loss = 1.0
for epoch in range(1, epochs + 1):
    loss *= 0.5
    print(json.dumps({"epoch": epoch, "loss": loss}), flush=True)
print("GPUs visible:", os.environ.get("CUDA_VISIBLE_DEVICES"))
os.makedirs("../modeldir", exist_ok=True)
with open("../modeldir/model.json", "w") as handle:
    json.dump({"epochs": epochs, "final_loss": loss}, handle)
print("saved ../modeldir/model.json")
