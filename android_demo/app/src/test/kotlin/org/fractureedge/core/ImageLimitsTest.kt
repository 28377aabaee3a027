package org.fractureedge.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Test
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.CsvSource

/** The app's header check against the limits of edge_runtime/pixels.py (32 MP, 16,384 px side, 20:1). */
class ImageLimitsTest {
    @Test
    fun theLimitsAreFractureEdges() {
        assertEquals(32_000_000L, ImageLimits.MAX_PIXELS)
        assertEquals(16_384, ImageLimits.MAX_SIDE)
        assertEquals(20, ImageLimits.MAX_ASPECT)
    }

    @ParameterizedTest
    @CsvSource("1, 1", "3000, 3000", "4000, 8000", "6400, 5000", "16384, 1953", "800, 16000", "16000, 800", "300, 6000")
    fun acceptsEveryImageWithinTheLimits(width: Int, height: Int) {
        assertNull(ImageLimits.problem(width, height))
    }

    @Test
    fun refusesMoreThan32Megapixels() {
        assertEquals("image too large (8000x4001 = 32.0 MP; the limit is 32 MP)", ImageLimits.problem(8000, 4001))
        assertEquals("image too large (10000x10000 = 100.0 MP; the limit is 32 MP)", ImageLimits.problem(10000, 10000))
    }

    @Test
    fun refusesALongSideOver16384Pixels() {
        assertEquals("image too large (16385x1000: a side of 16385 px; the limit is 16384 px)",
            ImageLimits.problem(16385, 1000))
        assertEquals("image too large (900x16385: a side of 16385 px; the limit is 16384 px)",
            ImageLimits.problem(900, 16385))
    }

    @Test
    fun refusesAnAspectRatioOver20To1() {
        assertEquals("image too elongated (6001x300: aspect ratio 20:1; the limit is 20:1)", ImageLimits.problem(6001, 300))
        assertEquals("image too elongated (10x1000: aspect ratio 100:1; the limit is 20:1)", ImageLimits.problem(10, 1000))
    }

    @Test
    fun theProductOfTwoLargeSidesDoesNotOverflow() {
        assertEquals("image too large (2147483647x2147483647 = 4611686014132.4 MP; the limit is 32 MP)",
            ImageLimits.problem(Int.MAX_VALUE, Int.MAX_VALUE))
    }

    @ParameterizedTest
    @CsvSource("0, 10", "10, 0", "-1, -1")
    fun refusesAnImageWithoutPixels(width: Int, height: Int) {
        assertEquals("image has no pixels (${width}x$height)", ImageLimits.problem(width, height))
    }

    @Test
    fun checkNamesTheFileInOneLine() {
        val error = assertThrows(ImageTooLargeException::class.java) { ImageLimits.check("content://x/1", 20000, 20000) }
        assertEquals("content://x/1: image too large (20000x20000 = 400.0 MP; the limit is 32 MP)", error.message)
        ImageLimits.check("content://x/2", 4000, 3000)
    }
}
