"""fracture_edge.export: Keras -> TFLite (fp32/fp16/int8) and ONNX (fp32/int8), each verified on real images."""
