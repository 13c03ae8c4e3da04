"""The compiled inner loops of :mod:`annotate.flac` (numba), imported on first use.

They live at module level, so numba's on-disk cache (``cache=True``) serves every later process: a
worker loads them in milliseconds instead of compiling for seconds.
"""
from __future__ import annotations

import numba
import numpy as np

from .flac import BLOCK, BLOCK_CODE, MAX_PARTITION_ORDER

jit = numba.njit(cache=True, boundscheck=False, nogil=True)
u64 = np.uint64


@jit
def store_word(out, pos, w):  # pragma: no cover - compiled
    """The low 32 bits of ``w`` into ``out[pos:pos + 4]``, big-endian."""
    out[pos] = np.uint8((w >> u64(24)) & u64(0xFF))
    out[pos + 1] = np.uint8((w >> u64(16)) & u64(0xFF))
    out[pos + 2] = np.uint8((w >> u64(8)) & u64(0xFF))
    out[pos + 3] = np.uint8(w & u64(0xFF))


@jit
def put(out, pos, acc, nacc, value, nbits):  # pragma: no cover - compiled
    """Append ``value`` (< 2**nbits, nbits <= 32), most significant bit first. Bits gather in ``acc``;
    whenever 32 are there they go to ``out`` as four bytes, so ``acc`` never holds more than 63."""
    acc = (acc << u64(nbits)) | u64(value)
    nacc += nbits
    if nacc >= 32:
        nacc -= 32
        store_word(out, pos, acc >> u64(nacc))
        pos += 4
    return pos, acc, nacc


@jit
def flush(out, pos, acc, nacc):  # pragma: no cover - compiled
    """Write the whole bytes still in ``acc`` (all of them when the stream is byte-aligned)."""
    while nacc >= 8:
        nacc -= 8
        out[pos] = np.uint8((acc >> u64(nacc)) & u64(0xFF))
        pos += 1
    return pos, acc, nacc


@jit
def put_rice(u, a, b, k, out, pos, acc, nacc):  # pragma: no cover - compiled
    """Rice codes with parameter ``k`` of ``u[a:b]``: the quotient in unary (zeros, then a one), then
    the ``k`` low bits. The hot loop of the encoder, so ``put``'s two lines of bit gathering are written out
    in it: calling ``put`` (it returns a tuple), even with numba's ``inline="always"``, makes the whole
    encoder 1.5x slower (4.7 vs 7 ns a sample, measured); the word store is shared (``store_word``)."""
    lo_mask = (1 << k) - 1
    for i in range(a, b):
        v = u[i]
        nb = (v >> k) + 1 + k
        if nb <= 32:
            acc = (acc << u64(nb)) | u64((1 << k) | (v & lo_mask))
            nacc += nb
            if nacc >= 32:
                nacc -= 32
                store_word(out, pos, acc >> u64(nacc))
                pos += 4
        else:  # a long unary run (an outlier in its partition): zeros in pieces
            q = v >> k
            while q > 24:
                pos, acc, nacc = put(out, pos, acc, nacc, 0, 24)
                q -= 24
            pos, acc, nacc = put(out, pos, acc, nacc, 1, q + 1)
            pos, acc, nacc = put(out, pos, acc, nacc, v & lo_mask, k)
    return pos, acc, nacc


@jit
def fixed_order(x, m):  # pragma: no cover - compiled
    """The fixed predictor order (0-4) with the smallest sum of |residual| from sample 4 on (libFLAC's choice).

    Loops index shifted views from 0 (not ``x[i - 1]``): numba then drops its negative-index checks and
    vectorises them, ~6x faster."""
    if m <= 4:
        return 0
    x0, x1, x2, x3, x4 = x[4:m], x[3 : m - 1], x[2 : m - 2], x[1 : m - 3], x[0 : m - 4]
    s0 = s1 = s2 = s3 = s4 = 0
    for i in range(m - 4):
        e1 = x0[i] - x1[i]
        e2 = e1 - (x1[i] - x2[i])
        e3 = e2 - (x1[i] - 2 * x2[i] + x3[i])
        s0 += abs(x0[i])
        s1 += abs(e1)
        s2 += abs(e2)
        s3 += abs(e3)
        s4 += abs(e3 - (x1[i] - 3 * x2[i] + 3 * x3[i] - x4[i]))
    order, best = 0, s0
    if s1 < best:
        order, best = 1, s1
    if s2 < best:
        order, best = 2, s2
    if s3 < best:
        order, best = 3, s3
    if s4 < best:
        order = 4
    return order


@jit
def zigzag_residuals(x, m, order, u):  # pragma: no cover - compiled
    """``u[order:m]``: the order's residuals folded to non-negative numbers (0, -1, 1, -2 -> 0, 1, 2, 3).
    One loop per order over shifted views (no temporaries)."""
    o, n = u[order:m], m - order
    if order == 0:
        for i in range(n):
            o[i] = (x[i] << 1) ^ (x[i] >> 63)
    elif order == 1:
        a, b = x[1:m], x[: m - 1]
        for i in range(n):
            e = a[i] - b[i]
            o[i] = (e << 1) ^ (e >> 63)
    elif order == 2:
        a, b, c = x[2:m], x[1 : m - 1], x[: m - 2]
        for i in range(n):
            e = a[i] - 2 * b[i] + c[i]
            o[i] = (e << 1) ^ (e >> 63)
    elif order == 3:
        a, b, c, d = x[3:m], x[2 : m - 1], x[1 : m - 2], x[: m - 3]
        for i in range(n):
            e = a[i] - 3 * b[i] + 3 * c[i] - d[i]
            o[i] = (e << 1) ^ (e >> 63)
    else:
        a, b, c, d, f = x[4:m], x[3 : m - 1], x[2 : m - 2], x[1 : m - 3], x[: m - 4]
        for i in range(n):
            e = a[i] - 4 * b[i] + 6 * c[i] - 4 * d[i] + f[i]
            o[i] = (e << 1) ^ (e >> 63)


@jit
def rice_param(total, cnt):  # pragma: no cover - compiled
    """Rice parameter (0-30) for ``cnt`` values adding up to ``total``, and its bit count cnt(k+1) + total/2^k
    (an upper bound: the sum of the quotients is at most the quotient of the sum)."""
    k = 0
    while k < 30 and (cnt << (k + 1)) <= total:  # 2^(k+1) <= mean: k = floor(log2(mean))
        k += 1
    best, bits = k, cnt * (k + 1) + (total >> k)
    if k < 30 and cnt * (k + 2) + (total >> (k + 1)) < bits:
        best, bits = k + 1, cnt * (k + 2) + (total >> (k + 1))
    if k > 0 and cnt * k + (total >> (k - 1)) < bits:
        best, bits = k - 1, cnt * k + (total >> (k - 1))
    return best, bits


@jit
def partition(u, m, order, sums, params, best_params):  # pragma: no cover - compiled
    """Rice partition order and parameters with the fewest (estimated) bits; ``best_params`` gets the
    parameters. Returns ``(partition order, 5-bit parameters?, bits)``."""
    top = 0  # the finest order that divides the block and leaves room for the warm-up samples
    while top < MAX_PARTITION_ORDER and m % (1 << (top + 1)) == 0 and (m >> (top + 1)) > order:
        top += 1
    size = m >> top
    for p in range(1 << top):
        sums[p] = u[max(p * size, order) : (p + 1) * size].sum()
    best_bits, best_order, wide = -1, 0, False
    for po in range(top, -1, -1):
        if po < top:  # merge neighbouring partitions: the sums of the next coarser order
            for p in range(1 << po):
                sums[p] = sums[2 * p] + sums[2 * p + 1]
        bits, big = 0, False
        for p in range(1 << po):
            k, b = rice_param(sums[p], (m >> po) - (order if p == 0 else 0))
            params[p] = k
            big = big or k > 14
            bits += b
        bits += (5 if big else 4) << po
        if best_bits < 0 or bits < best_bits:
            best_bits, best_order, wide = bits, po, big
            best_params[: 1 << po] = params[: 1 << po]
    return best_order, wide, best_bits


@jit
def frame_header(out, pos, m, frame, rate_code, crc8):  # pragma: no cover - compiled
    """Sync code, block size, rate, mono 16-bit, frame number (UTF-8 style), CRC-8: whole bytes."""
    acc, nacc, head = u64(0), 0, pos
    pos, acc, nacc = put(out, pos, acc, nacc, 0xFFF8, 16)  # sync code, fixed block size
    bs_code = BLOCK_CODE if m == BLOCK else (6 if m <= 256 else 7)  # 6/7: size - 1 in 8/16 bits at the end
    pos, acc, nacc = put(out, pos, acc, nacc, (bs_code << 4) | rate_code, 8)
    pos, acc, nacc = put(out, pos, acc, nacc, 0x08, 8)  # mono, 16 bits per sample, reserved 0
    if frame < 0x80:
        pos, acc, nacc = put(out, pos, acc, nacc, frame, 8)
    else:
        n_cont = 1
        while frame >= (1 << (5 * n_cont + 6)):
            n_cont += 1
        lead = (0xFF00 >> (n_cont + 1)) & 0xFF
        pos, acc, nacc = put(out, pos, acc, nacc, lead | (frame >> (6 * n_cont)), 8)
        for c in range(n_cont - 1, -1, -1):
            pos, acc, nacc = put(out, pos, acc, nacc, 0x80 | ((frame >> (6 * c)) & 0x3F), 8)
    if bs_code == 6:
        pos, acc, nacc = put(out, pos, acc, nacc, m - 1, 8)
    elif bs_code == 7:
        pos, acc, nacc = put(out, pos, acc, nacc, m - 1, 16)
    pos, acc, nacc = flush(out, pos, acc, nacc)
    c8 = 0
    for i in range(head, pos):
        c8 = crc8[c8 ^ out[i]]
    out[pos] = c8
    return pos + 1


@jit
def crc16_of(data, crc16):  # pragma: no cover - compiled
    """CRC-16 (polynomial 0x8005) of ``data``, four bytes a step."""
    c, i, n = 0, 0, len(data)
    t0, t1, t2, t3 = crc16[0], crc16[1], crc16[2], crc16[3]
    while i + 4 <= n:
        c = t3[(c >> 8) ^ data[i]] ^ t2[(c & 0xFF) ^ data[i + 1]] ^ t1[data[i + 2]] ^ t0[data[i + 3]]
        i += 4
    while i < n:
        c = ((c << 8) & 0xFFFF) ^ t0[(c >> 8) ^ data[i]]
        i += 1
    return c


@jit
def encode_frames(pcm, rate_code, out, crc8, crc16):  # pragma: no cover - compiled
    """All frames of ``pcm`` into ``out``; returns the number of bytes written."""
    n = len(pcm)
    pos = 0
    x = np.empty(BLOCK, np.int64)
    u = np.empty(BLOCK, np.int64)
    sums = np.empty(1 << MAX_PARTITION_ORDER, np.int64)
    params = np.empty(1 << MAX_PARTITION_ORDER, np.int64)
    best_params = np.empty(1 << MAX_PARTITION_ORDER, np.int64)
    for frame in range((n + BLOCK - 1) // BLOCK):
        start = frame * BLOCK
        m = min(BLOCK, n - start)
        constant = True
        for i in range(m):
            x[i] = pcm[start + i]
            constant = constant and x[i] == x[0]
        head = pos
        pos = frame_header(out, pos, m, frame, rate_code, crc8)
        acc, nacc = u64(0), 0
        if constant:  # subframe header byte: 0, type (6 bits), no wasted bits
            pos, acc, nacc = put(out, pos, acc, nacc, 0x00, 8)
            pos, acc, nacc = put(out, pos, acc, nacc, x[0] & 0xFFFF, 16)
        else:
            order = fixed_order(x, m)
            zigzag_residuals(x, m, order, u)
            po, wide, bits = partition(u, m, order, sums, params, best_params)
            if bits + 6 + 16 * order >= 16 * m:  # no gain over the raw samples: verbatim
                pos, acc, nacc = put(out, pos, acc, nacc, 0x02, 8)
                for i in range(m):
                    pos, acc, nacc = put(out, pos, acc, nacc, x[i] & 0xFFFF, 16)
            else:
                pos, acc, nacc = put(out, pos, acc, nacc, (8 | order) << 1, 8)
                for i in range(order):  # warm-up samples
                    pos, acc, nacc = put(out, pos, acc, nacc, x[i] & 0xFFFF, 16)
                # coding method (2 bits: 4- or 5-bit Rice parameters), partition order (4 bits)
                pos, acc, nacc = put(out, pos, acc, nacc, (16 if wide else 0) | po, 6)
                size = m >> po
                for p in range(1 << po):
                    k = best_params[p]
                    pos, acc, nacc = put(out, pos, acc, nacc, k, 5 if wide else 4)
                    pos, acc, nacc = put_rice(u, max(p * size, order), (p + 1) * size, k, out, pos, acc, nacc)
        if nacc % 8:  # pad to a byte
            pos, acc, nacc = put(out, pos, acc, nacc, 0, 8 - nacc % 8)
        pos, acc, nacc = flush(out, pos, acc, nacc)
        c = crc16_of(out[head:pos], crc16)
        out[pos] = c >> 8
        out[pos + 1] = c & 0xFF
        pos += 2
    return pos
