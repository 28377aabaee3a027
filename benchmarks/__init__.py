"""fracture_edge.benchmarks: latency, size, memory and accuracy of every artifact, side by side."""
