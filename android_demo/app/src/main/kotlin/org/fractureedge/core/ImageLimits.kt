package org.fractureedge.core

import java.util.Locale

/**
 * The decoding memory budget of fracture-edge (edge_runtime/pixels.py, check_dimensions), checked from the
 * image header before any pixel is decoded: at most 32 MP, a long side of at most 16,384 px, and a long side
 * at most 20 times the short one. The messages read like the Python ones.
 */
object ImageLimits {
    const val MAX_PIXELS = 32_000_000L
    const val MAX_SIDE = 16_384
    const val MAX_ASPECT = 20

    /** Null when an image of width x height may be decoded; otherwise the reason, one line, without the file name. */
    fun problem(width: Int, height: Int): String? {
        if (width <= 0 || height <= 0) return "image has no pixels (${width}x$height)"
        val size = "${width}x$height"
        val pixels = width.toLong() * height
        val long = maxOf(width, height)
        val short = minOf(width, height)
        return when {
            pixels > MAX_PIXELS -> "image too large ($size = ${format("%.1f", pixels / 1e6)} MP; the limit is " +
                "${MAX_PIXELS / 1_000_000} MP)"
            long > MAX_SIDE -> "image too large ($size: a side of $long px; the limit is $MAX_SIDE px)"
            long.toLong() > MAX_ASPECT.toLong() * short -> "image too elongated ($size: aspect ratio " +
                "${format("%.0f", long.toDouble() / short)}:1; the limit is $MAX_ASPECT:1)"
            else -> null
        }
    }

    /** Throw ImageTooLargeException("<name>: <reason>") when [problem] finds one. */
    fun check(name: String, width: Int, height: Int) {
        problem(width, height)?.let { throw ImageTooLargeException("$name: $it") }
    }

    private fun format(pattern: String, value: Double) = String.format(Locale.ROOT, pattern, value)
}

/** An image the app refuses to decode because of its size; the message is the one line the user sees. */
class ImageTooLargeException(message: String) : java.io.IOException(message)
