# Two commands for a fresh clone: `make demo` and `make test`. Both create (or reuse) .venv and
# install paravox from this repository's own files.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/demo
DEMO_OUT ?= runs/demo

.PHONY: demo study large two-step mgf learn2diss test lint docs wheel-check bench clean install gpu-check

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[synth,dev,onnx,hf,audio,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/paravox synth --preset demo -o $(DEMO_DIR) --reuse
	$(BIN)/paravox manifest validate $(DEMO_DIR)/train.jsonl
	$(BIN)/paravox preview $(DEMO_DIR)/train.jsonl -o $(DEMO_DIR)/preview.png
	$(BIN)/paravox demo --corpus $(DEMO_DIR) -o $(DEMO_OUT)
	@echo "open $(DEMO_OUT)/report.html (or report.md)"

# one target per registered study (`paravox study NAME`, its output folder is the study's
# default): study-dino (the DINO paper's four findings, ~2.5 h), study-mgf (MGF and its
# ablations), study-learn2diss (Learn2Diss with and without the MI penalty; reuses study-mgf's
# MGF and DINO bundles when there) -> runs/<study>/report.html
study-%: $(STAMP)
	$(BIN)/paravox synth --preset demo -o $(DEMO_DIR) --reuse
	$(BIN)/paravox study $* --corpus $(DEMO_DIR) --reuse

study: study-dino
mgf: study-mgf
learn2diss: study-learn2diss

# more data: the `large` corpus (~100 h, ~11 min to generate), DINO and SimCLR pretrained on
# it (dino_large ~2.5 h + simclr_large ~40 min on 2 cores with bf16, ~3.7 h with the evaluations;
# LARGE_SET=run.epochs=2: 1500 steps each, ~1.1 h of training), then the large and the demo's
# bundles (runs `make demo` first when those are missing) scored on both test splits:
# SV (cosine) and linear probes -> runs/large/demo_vs_large.md and .png
LARGE_DIR ?= data/large
LARGE_OUT ?= runs/large
# recipe overrides for both pretraining runs, e.g. a shorter run: make large LARGE_SET=run.epochs=2
LARGE_SET ?=
large: $(STAMP)
	$(BIN)/paravox synth --preset demo -o $(DEMO_DIR) --reuse
	$(BIN)/paravox synth --preset large -o $(LARGE_DIR) --reuse
	test -f $(DEMO_OUT)/bundles/dino/config.json || $(MAKE) demo
	$(BIN)/paravox pretrain dino_large train_manifest=$(LARGE_DIR)/pretrain.jsonl \
		eval_manifest=$(LARGE_DIR)/test.jsonl trials=$(LARGE_DIR)/trials.txt $(LARGE_SET)
	$(BIN)/paravox pretrain simclr_large train_manifest=$(LARGE_DIR)/pretrain.jsonl \
		eval_manifest=$(LARGE_DIR)/test.jsonl trials=$(LARGE_DIR)/trials.txt $(LARGE_SET)
	$(BIN)/paravox export runs/dino_large -o $(LARGE_OUT)/bundles/dino
	$(BIN)/paravox export runs/simclr_large -o $(LARGE_OUT)/bundles/simclr
	for m in dino simclr; do for src in demo large; do for c in $(DEMO_DIR) $(LARGE_DIR); do \
		b=$$(test $$src = demo && echo $(DEMO_OUT) || echo $(LARGE_OUT))/bundles/$$m; \
		o=$(LARGE_OUT)/eval/$${m}_$${src}_on_$$(basename $$c); \
		$(BIN)/paravox evaluate sv $$b --manifest $$c/test.jsonl --trials $$c/trials.txt \
			-o $$o -q || exit 1; \
		$(BIN)/paravox evaluate classify $$b --task style fluency language \
			--train $$c/train.jsonl --test $$c/test.jsonl -o $$o -q || exit 1; \
		done; done; done
	$(BIN)/python benchmarks/demo_vs_large.py --eval $(LARGE_OUT)/eval \
		--corpora $(DEMO_DIR) $(LARGE_DIR) --runs '$(DEMO_OUT)/runs/{model}' 'runs/{model}_large' \
		-o $(LARGE_OUT)/demo_vs_large

# two-step fine-tuning vs its baselines on style and fluency, from the demo's DINO bundle
# (runs `make demo` first when that bundle is missing)
TWO_STEP_OUT ?= runs/two_step
two-step: $(STAMP)
	test -f $(DEMO_OUT)/bundles/dino/config.json || $(MAKE) demo
	$(BIN)/paravox finetune two-step $(DEMO_OUT)/bundles/dino --task style fluency \
		--train $(DEMO_DIR)/train.jsonl --test $(DEMO_DIR)/test.jsonl -o $(TWO_STEP_OUT) \
		$(if $(TWO_STEP_SET),--set $(TWO_STEP_SET),)
	@echo "open $(TWO_STEP_OUT)/report.html (or report.md)"

# on a GPU machine: every method a few dozen steps on CUDA (bf16), export, GPU/CPU embedding
# parity, and a 2-process NCCL DDP run when there are two GPUs -> one table
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py

# one pytest-xdist worker per core (TEST_WORKERS=0: one process, e.g. to debug)
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# the documentation site (docs/ + mkdocs.yml); --strict turns every warning into an error
docs: $(STAMP)
	$(BIN)/mkdocs build --strict -d site

# a wheel, installed into a fresh venv outside the repository, runs the tiny demo there
WHEEL_TMP ?= /tmp/paravox-wheel-check
wheel-check: $(STAMP)
	rm -rf $(WHEEL_TMP) && mkdir -p $(WHEEL_TMP)/dist $(WHEEL_TMP)/work
	$(BIN)/python -m pip wheel --quiet --no-deps -w $(WHEEL_TMP)/dist .
	$(PY) -m venv $(WHEEL_TMP)/venv
	$(WHEEL_TMP)/venv/bin/python -m pip install --quiet -c $(CURDIR)/constraints.txt \
		"$$(ls $(WHEEL_TMP)/dist/paravox-*.whl)[synth]"
	cd $(WHEEL_TMP)/work && $(WHEEL_TMP)/venv/bin/paravox demo --preset tiny -o out -q
	test -s $(WHEEL_TMP)/work/out/report.html && test -s $(WHEEL_TMP)/work/out/report.md
	@echo "wheel check: the installed wheel ran the tiny demo in $(WHEEL_TMP)/work/out"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_synth.py
	$(BIN)/python benchmarks/bench_data_pipeline.py
	$(BIN)/python benchmarks/bench_compressed_audio.py
	$(BIN)/paravox synth --preset demo -o $(DEMO_DIR) --reuse -q
	$(BIN)/python benchmarks/bench_training.py --corpus $(DEMO_DIR)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/shard_throughput.py --corpus $(DEMO_DIR)
	$(BIN)/python benchmarks/bench_embedding.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
