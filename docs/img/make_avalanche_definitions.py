"""Draw docs/img/avalanche_definitions.png: both cascade definitions on one real sequence of the bundled MiniLM.

    PYTHONPATH=src python docs/img/make_avalanche_definitions.py
"""

from pathlib import Path

from thermolens import io, models
from thermolens.data import corpus
from thermolens.experiments.avalanches.measure import AvalancheConfig, count_lattice
from thermolens.experiments.avalanches.cascades import cluster_labels
from thermolens.report.avalanches import plot_definitions

config = AvalancheConfig(max_tokens=16 * 128)  # the default site (resid) and threshold (z > 3)
loaded = models.load_model(None)
tokens = corpus.tokenize_corpus(loaded.tokenizer, [corpus.builtin_text()], seq_len=config.seq_len,
                                max_tokens=config.max_tokens)
lattice, _ = count_lattice(loaded, tokens, config)
labels, _ = cluster_labels(lattice.main, lattice.valid)
seq, n_pos = 3, 64  # the first 64 tokens of the 4th sequence
axes = plot_definitions(lattice.main[seq, :n_pos], labels[seq, :n_pos],
                        title="all-MiniLM-L6-v2, residual stream, unit active when |z| > 3: active units per (token, layer)")
axes[0].figure.tight_layout()
io.save_figure(axes[0].figure, Path(__file__).with_name("avalanche_definitions.png"))
