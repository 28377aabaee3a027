package org.fractureedge.core

import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.max

/** The non-zero taps of one output pixel: input indices first until first + weights.size. */
class Taps(val first: Int, val weights: DoubleArray)

/**
 * The contract's "triangle-antialias" resize, operation for operation the same as
 * fracture_edge.edge_runtime.preprocessing.resize_weights / resize_gray (float64 throughout):
 * weights 1 - |position - centre| / max(scale, 1) clipped at 0, each row divided by its numpy
 * (pairwise) sum; then rows first, columns second, each output adding its taps in increasing
 * input index. The JVM never fuses a*b+c, so every rounding step matches numpy's.
 */
object TriangleResize {
    private const val PAIRWISE_BLOCK = 128   // numpy's PW_BLOCKSIZE

    fun weights(nIn: Int, nOut: Int): List<Taps> {
        val scale = nIn.toDouble() / nOut.toDouble()
        val radius = max(scale, 1.0)
        val row = DoubleArray(nIn)
        return (0 until nOut).map { i ->
            val center = (i.toDouble() + 0.5) * scale
            for (j in 0 until nIn) {
                row[j] = max(1.0 - abs((j.toDouble() + 0.5) - center) / radius, 0.0)
            }
            val total = pairwiseSum(row, 0, nIn)
            val first = row.indexOfFirst { it > 0.0 }
            val last = row.indexOfLast { it > 0.0 }
            Taps(first, DoubleArray(last - first + 1) { row[first + it] / total })
        }
    }

    /** numpy's pairwise_sum (loops_utils.h): 8 accumulators up to 128 values, halves above. */
    fun pairwiseSum(a: DoubleArray, start: Int, n: Int): Double {
        if (n < 8) {
            var res = 0.0
            for (i in 0 until n) res += a[start + i]
            return res
        }
        if (n <= PAIRWISE_BLOCK) {
            val r = DoubleArray(8) { a[start + it] }
            var i = 8
            while (i < n - n % 8) {
                for (j in 0 until 8) r[j] += a[start + i + j]
                i += 8
            }
            var res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
            while (i < n) res += a[start + i++]
            return res
        }
        var half = n / 2
        half -= half % 8
        return pairwiseSum(a, start, half) + pairwiseSum(a, start + half, n - half)
    }

    /** Resize to size x size; returns float64 values row by row (before rounding). */
    fun resize(image: GrayImage, size: Int): DoubleArray {
        val w = image.width
        val rows = weights(image.height, size)
        val vertical = DoubleArray(size * w)
        for (i in 0 until size) {
            val taps = rows[i]
            for (x in 0 until w) {
                var acc = 0.0
                for (t in taps.weights.indices) acc += taps.weights[t] * image.values[(taps.first + t) * w + x]
                vertical[i * w + x] = acc
            }
        }
        val cols = weights(w, size)
        val out = DoubleArray(size * size)
        for (i in 0 until size) {
            for (j in 0 until size) {
                val taps = cols[j]
                var acc = 0.0
                for (t in taps.weights.indices) acc += taps.weights[t] * vertical[i * w + taps.first + t]
                out[i * size + j] = acc
            }
        }
        return out
    }

    /** floor(x + 0.5) clipped to 0..255, as the contract's "rounding" says. */
    fun roundPixel(value: Double): Int = floor(value + 0.5).coerceIn(0.0, 255.0).toInt()
}
