// COMPILE-ONLY STUB of LiteRT's org.tensorflow.lite.Tensor (see ../../../README.md); never packaged.
package org.tensorflow.lite;

public interface Tensor {
    DataType dataType();

    int[] shape();

    int numElements();

    QuantizationParams quantizationParams();

    class QuantizationParams {
        public QuantizationParams(float scale, int zeroPoint) { throw new UnsupportedOperationException("stub"); }

        public float getScale() { throw new UnsupportedOperationException("stub"); }

        public int getZeroPoint() { throw new UnsupportedOperationException("stub"); }
    }
}
