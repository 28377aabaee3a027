"""fracture_edge.train: data checks, DenseNet121 training, evaluation and the synthetic demo (TensorFlow imported lazily)."""
