"""fracture_edge.experiments: lab scripts whose results feed the docs (the fine-tuning recipe lab, the
site-adaptation simulation). Not part of the pipeline: nothing in train/, export/, edge_runtime/ or
benchmarks/ imports them."""
