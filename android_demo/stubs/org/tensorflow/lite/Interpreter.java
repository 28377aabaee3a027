// COMPILE-ONLY STUB of LiteRT's org.tensorflow.lite.Interpreter (see ../../../README.md); never packaged.
package org.tensorflow.lite;

import java.nio.ByteBuffer;
import java.util.Map;

public final class Interpreter implements AutoCloseable {
    public static class Options {
        public Options() { throw new UnsupportedOperationException("stub"); }

        public Options setNumThreads(int numThreads) { throw new UnsupportedOperationException("stub"); }
    }

    public Interpreter(ByteBuffer model, Options options) { throw new UnsupportedOperationException("stub"); }

    public Tensor getInputTensor(int inputIndex) { throw new UnsupportedOperationException("stub"); }

    public Tensor getOutputTensor(int outputIndex) { throw new UnsupportedOperationException("stub"); }

    public int getOutputTensorCount() { throw new UnsupportedOperationException("stub"); }

    public void run(Object input, Object output) { throw new UnsupportedOperationException("stub"); }

    public void runForMultipleInputsOutputs(Object[] inputs, Map<Integer, Object> outputs) {
        throw new UnsupportedOperationException("stub");
    }

    @Override
    public void close() { throw new UnsupportedOperationException("stub"); }
}
